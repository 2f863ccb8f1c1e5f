"""Every bad value a user can type is refused before any work: one ``error:`` line, exit 2, no directory left.

The cases run in-process through the CLI's own error contract (``conftest.cli_refusal``: ``cli.entry`` around
Hydra's composition, the output directory's creation and ``cli.run_job``); the ``subprocess`` tests at the end check
the same contract on ``python run.py`` as a user runs it (one composition error, one validation error, one directory
that cannot be created)."""

import os

import pytest
from conftest import cli_refusal, run_cli


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "prompts.json").write_text('["a red circle",\n  "a blue square"\n')  # unterminated list, line 2
    (d / "roles.json").write_text('{"a red circle": {"red": "colour",}}')
    (d / "a_file").write_text("not a directory")
    locked = d / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return d


CASES = {  # overrides -> what the one line must contain
    "explainer.p=abc": "explainer.p='abc' is invalid",
    "model.guidance_scale=abc": "model.guidance_scale='abc' is invalid",
    "model.guidance_scale=1e30": "model.guidance_scale=1e+30 is invalid",
    "model.guidance_scale=inf": "model.guidance_scale=inf is invalid",
    "data.num_prompts=abc": "data.num_prompts='abc' is invalid",
    "data.seeds=abc": "data.seeds='abc' is invalid",
    "data.seeds=[99999999999999999999]": "data.seeds=[99999999999999999999] is invalid",
    "data.negative_prompt=123": "data.negative_prompt=123 is invalid",
    "data.prompt_file={d}/prompts.json": "line 3",
    "explainer=cross_attention explainer.roles_file={d}/roles.json": "line 1",
    "runner=gpu": "runner.accelerator='gpu' is invalid",
    "data=coco_captions": "data.prompt_file='???' is invalid: required for data=coco_captions",
    "explainer=nope": "explainer=nope is not a choice; one of [",
    "explainer.n_mask=3": "explainer.n_mask is not a config key; nearest: explainer.n_masks",
    "+explainer.n_mask=3": "not a key of explainer=rise; nearest: explainer.n_masks",
    "schedule=exp_late model.scheduler=dpm_solver schedule.num_steps=900 schedule.lam=0":
        "schedule.num_steps=900 is invalid: with schedule.lam=0",
    "schedule=exp_late model.scheduler=ddim":  # refused before the model loads
        "model.scheduler='ddim' is invalid: a scheduler that takes custom timesteps (schedule=exp_late",
    "hydra.run.dir={d}/a_file": "cannot create the output directory",
    "hydra.run.dir=/proc/diffexplain": "cannot create the output directory",
    "resume=maybe": "resume='maybe' is invalid",
    # pipeline=explain's DF-RISE values (the line starts with the key)
    "pipeline=explain schedule.num_steps=4 explainer.n_masks=0": "error: explainer.n_masks=0 is invalid",
    "pipeline=explain schedule.num_steps=4 explainer.p=1.5": "error: explainer.p=1.5 is invalid",
    "pipeline=explain schedule.num_steps=4 explainer.steps=[7]": "error: explainer.steps=7 is invalid",
    "pipeline=explain schedule.num_steps=4 explainer.target=noise": "error: explainer.target='noise' is invalid",
    "pipeline=generate schedule.num_steps=0": "schedule.num_steps=0 is invalid: an integer in [1, 1000]",
}
if os.geteuid() != 0:  # root writes anywhere
    CASES["hydra.run.dir={d}/locked/run"] = "cannot create the output directory"


@pytest.mark.parametrize("overrides", list(CASES))
def test_every_user_error_is_one_line_exit_2_and_leaves_nothing(overrides, bad_files, tmp_path, capsys):
    args = [a.format(d=bad_files) for a in overrides.split()]
    run_dir = next((a.split("=", 1)[1] for a in args if a.startswith("hydra.run.dir=")), None)
    args = [a for a in args if not a.startswith("hydra.run.dir=")]
    out = tmp_path / "run" if run_dir is None else run_dir
    line = cli_refusal("model=tiny", "logger=none", *args, out_dir=out, capsys=capsys)
    assert CASES[overrides] in line and len(line) < 500, line
    assert run_dir is not None or not out.exists()


# -- the same contract on `python run.py` as a user runs it -----------------------------------------------------------

def subprocess_error_line(res) -> str:
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_the_command_line_refuses_a_bad_value_in_one_line_exit_2_leaving_no_directory(tmp_path):
    out = tmp_path / "run"
    line = subprocess_error_line(run_cli("pipeline=generate", "model=tiny", "schedule.num_steps=0", "logger=none",
                                         f"hydra.run.dir={out}"))
    assert line == "error: schedule.num_steps=0 is invalid: an integer in [1, 1000]"
    assert not out.exists()


def test_the_command_line_rewrites_hydras_composition_errors_to_one_line(tmp_path):
    out = tmp_path / "run"
    line = subprocess_error_line(run_cli("model=tiny", "logger=none", "explainer.n_mask=3", f"hydra.run.dir={out}"))
    assert "explainer.n_mask is not a config key; nearest: explainer.n_masks" in line
    assert not out.exists()


def test_the_command_line_names_an_output_directory_hydra_cannot_create(bad_files):
    line = subprocess_error_line(run_cli("model=tiny", "logger=none", f"hydra.run.dir={bad_files}/a_file"))
    assert "cannot create the output directory" in line
