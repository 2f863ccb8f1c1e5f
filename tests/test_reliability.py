"""Never a traceback, never a silent wrong result, never code execution: the error contract, resume and sweeps."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import ROOT, run_cli
from diffexplain.errors import ResultError
from diffexplain.items import PromptItem, make_prompt_id
from diffexplain.models import tiny_model
from diffexplain.pipelines.generate import GeneratePipeline
from diffexplain.schedules import Uniform

TINY = ("model=tiny", "logger=none", "schedule.num_steps=2", "data.prompts=[a red circle]")


def one_error_line(res) -> str:
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


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
    "schedule=exp_late model.scheduler=dpm_solver schedule.num_steps=900 schedule.lam=0": "schedule.num_steps=900 is invalid: with schedule.lam=0",
    "hydra.run.dir={d}/a_file": "cannot create the output directory",
    "hydra.run.dir=/proc/diffexplain": "cannot create the output directory",
    "resume=maybe": "resume='maybe' is invalid",
}
if os.geteuid() != 0:  # root writes anywhere
    CASES["hydra.run.dir={d}/locked/run"] = "cannot create the output directory"


@pytest.mark.parametrize("overrides", list(CASES))
def test_every_user_error_is_one_line_exit_2_and_leaves_nothing(overrides, bad_files, tmp_path):
    out = tmp_path / "run"
    args = [a.format(d=bad_files) for a in overrides.split()]
    if not any(a.startswith("hydra.run.dir") for a in args):
        args.append(f"hydra.run.dir={out}")
    start = time.perf_counter()
    line = one_error_line(run_cli("model=tiny", "logger=none", *args))
    assert CASES[overrides] in line and len(line) < 500, line
    assert not out.exists()
    print(f"{overrides}: {time.perf_counter() - start:.1f} s")


def test_a_non_finite_latent_stops_the_item_naming_the_step_and_the_cause():
    model = tiny_model(guidance_scale=7.5)
    model.guidance_scale = 1e30  # past validation: the runtime check is the second line
    item = PromptItem(make_prompt_id("a red circle", 0), "a red circle", 0)
    with pytest.raises(ResultError, match=r"non-finite at step \d+ .*model.guidance_scale=1e\+30"):
        GeneratePipeline(Uniform(3)).process(model, item)


def test_no_code_is_deserialised_anywhere_in_src():
    for path in (ROOT / "src").rglob("*.py"):
        text = path.read_text()
        assert "pickle" not in text and "weights_only=False" not in text, path


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['PAYLOAD_MARK']}",))


def test_a_crafted_shard_runs_no_code_and_is_recomputed(tmp_path, monkeypatch):
    out, mark = tmp_path / "run", tmp_path / "pwned"
    monkeypatch.setenv("PAYLOAD_MARK", str(mark))
    assert run_cli(*TINY, f"hydra.run.dir={out}").returncode == 0
    # turn the finished run back into an interrupted one whose only shard carries a pickle payload
    info = json.loads((out / "run.json").read_text())
    pid = info["items"][0]["prompt_id"]
    shard = out / ".partial" / pid
    shard.mkdir(parents=True)
    (out / ".partial" / "config.json").write_text(json.dumps(info["config"]))
    (out / "run.json").unlink()
    pd.read_parquet(out / "results.parquet").to_parquet(shard / "rows.parquet")
    np.savez(shard / "heatmaps.npz", evil=np.array([Payload()], dtype=object))
    (shard / "meta.json").write_text(json.dumps({"item": {}, "timesteps": info["timesteps"], "seconds": 1.0,
                                                 "fingerprint": info["fingerprint"]}))
    (out / ".partial" / f"{pid}.pkl").write_bytes(pickle.dumps(Payload()))  # the old shard format
    res = run_cli(*TINY, f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stderr[-2000:]
    assert not mark.exists(), "a saved file ran code"
    assert "recomputing it" in res.stdout + res.stderr
    assert "evil" not in np.load(out / "heatmaps.npz").files
    assert (out / "run.json").is_file()


def kill_after_first_item(out: Path, *args: str) -> None:
    """Start the CLI, wait until its first item is saved, then kill -9 it."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args, f"hydra.run.dir={out}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not list((out / ".partial").glob("*/meta.json")):
            assert proc.poll() is None and time.time() < deadline, "the run ended before its first item was saved"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_kill_9_then_resume_checks_the_config_keeps_finished_items_and_ends_bitwise_equal(tmp_path):
    args = ("pipeline=generate", "model=tiny", "logger=none", "schedule.num_steps=40",
            "data.prompts=[a red circle, a blue square, a green triangle]")
    out, reference = tmp_path / "killed", tmp_path / "reference"
    kill_after_first_item(out, *args)
    assert not (out / "run.json").exists()
    (first,) = [p.parent for p in (out / ".partial").glob("*/meta.json")]

    line = one_error_line(run_cli(*args[:-2], "schedule.num_steps=41", args[-1], f"hydra.run.dir={out}"))
    assert "another config (differs in schedule.num_steps)" in line and first.is_dir()

    rows = pd.read_parquet(first / "rows.parquet")
    rows.loc[rows.index[0], "value"] = 123.0  # a marker: a finished item must not be recomputed
    rows.to_parquet(first / "rows.parquet")
    res = run_cli(*args, f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stderr[-2000:]
    assert run_cli(*args, f"hydra.run.dir={reference}").returncode == 0
    resumed, full = pd.read_parquet(out / "results.parquet"), pd.read_parquet(reference / "results.parquet")
    assert (resumed.value == 123.0).sum() == 1 and len(resumed) == len(full)
    keep = resumed.value != 123.0
    pd.testing.assert_frame_equal(resumed[keep].reset_index(drop=True), full[keep].reset_index(drop=True))

    again = run_cli(*args, f"hydra.run.dir={out}")
    assert again.returncode == 0 and "nothing to do" in again.stdout + again.stderr
    fresh = run_cli(*args, "resume=overwrite", f"hydra.run.dir={out}")
    assert fresh.returncode == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), full)


def test_a_sweep_runs_its_valid_jobs_and_ends_with_one_line_naming_the_failed(tmp_path):
    sweep = tmp_path / "sweep"
    res = run_cli("-m", "pipeline=generate", *TINY[:2], TINY[3], "schedule.num_steps=0,2", f"hydra.sweep.dir={sweep}")
    assert res.returncode == 2, res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert errors[-1].startswith("error: 1 of 2 jobs failed: #0 schedule.num_steps=0"), errors
    assert (sweep / "1" / "run.json").is_file() and (sweep / "0" / "failed.json").is_file()
    again = run_cli("-m", "pipeline=generate", *TINY[:2], TINY[3], "schedule.num_steps=0,2", f"hydra.sweep.dir={sweep}")
    assert again.returncode == 2 and f"nothing to do: {sweep / '1'}" in again.stdout, "a finished job was recomputed"


def test_two_sweeps_started_together_never_share_a_directory(tmp_path):
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", "pipeline=generate", *TINY, f"paths.log_dir={tmp_path}"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    assert all(p.wait(timeout=600) == 0 for p in procs)
    runs = list((tmp_path / "multirun").glob("*/*/0/run.json"))
    assert len(runs) == 2


def test_ddp_with_fewer_items_than_ranks_finishes(tmp_path):
    out = tmp_path / "run"
    res = run_cli("pipeline=generate", *TINY, "runner=ddp", "runner.accelerator=cpu", "runner.devices=3",
                  f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stderr[-3000:]
    df = pd.read_parquet(out / "results.parquet")
    assert df.prompt.unique().tolist() == ["a red circle"] and len(df) == 2 * 2
    assert torch.isfinite(torch.tensor(df.value.to_numpy())).all()


def test_a_schedule_the_scheduler_cannot_take_is_refused_before_the_model_loads(tmp_path):
    line = one_error_line(run_cli("schedule=exp_late", "model.scheduler=ddim", "logger=none",
                                  f"hydra.run.dir={tmp_path / 'run'}"))
    assert "model.scheduler='ddim' is invalid: a scheduler that takes custom timesteps (schedule=exp_late" in line
