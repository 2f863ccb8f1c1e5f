"""Never a traceback, never a silent wrong result, never code execution: the error contract, resume and sweeps."""

import json
import logging
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
from conftest import CLI_ENV, ROOT, cli_refusal, hydra_job, run_cli, run_job

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


# The refusals (one line, exit 2, nothing left behind) are in test_refusals.py.


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


def test_a_crafted_shard_runs_no_code_and_is_recomputed(tmp_path, monkeypatch, caplog):
    out, mark = tmp_path / "run", tmp_path / "pwned"
    monkeypatch.setenv("PAYLOAD_MARK", str(mark))
    run_job(*TINY, out_dir=out)
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
    with caplog.at_level(logging.INFO, logger="diffexplain"):
        run_job(*TINY, out_dir=out)
    assert not mark.exists(), "a saved file ran code"
    assert "recomputing it" in caplog.text
    assert "evil" not in np.load(out / "heatmaps.npz").files
    assert (out / "run.json").is_file()


class Interrupted(Exception):
    """Stands in for kill -9 in-process: the job stops right after its first item's shard is saved."""


def interrupt_after_first_item(monkeypatch, out: Path, *args: str) -> Path:
    """Run the job in-process, stop it when the second batch starts; returns the first item's shard."""
    from diffexplain.runner.module import ExplainModule

    predict_step = ExplainModule.predict_step

    def stop_at_the_second_batch(self, batch, batch_idx):
        if batch_idx >= 1:
            raise Interrupted
        return predict_step(self, batch, batch_idx)

    with monkeypatch.context() as m:
        m.setattr(ExplainModule, "predict_step", stop_at_the_second_batch)
        with pytest.raises(Interrupted):
            run_job(*args, out_dir=out)
    assert not (out / "run.json").exists()
    (first,) = [p.parent for p in (out / ".partial").glob("*/meta.json")]
    return first


def test_an_interrupted_run_resumes_checking_the_config_keeping_finished_items_and_ends_equal(tmp_path, monkeypatch,
                                                                                              capsys, caplog):
    """The fast cousin of the kill -9 test below: the same checks on a run stopped in-process after its first item."""
    args = ("pipeline=generate", "model=tiny", "logger=none", "schedule.num_steps=4",
            "data.prompts=[a red circle, a blue square, a green triangle]")
    out, reference = tmp_path / "stopped", tmp_path / "reference"
    first = interrupt_after_first_item(monkeypatch, out, *args)

    line = cli_refusal(*args[:-2], "schedule.num_steps=5", args[-1], out_dir=out, capsys=capsys)
    assert "another config (differs in schedule.num_steps)" in line and first.is_dir()

    rows = pd.read_parquet(first / "rows.parquet")
    rows.loc[rows.index[0], "value"] = 123.0  # a marker: a finished item must not be recomputed
    rows.to_parquet(first / "rows.parquet")
    run_job(*args, out_dir=out)
    run_job(*args, out_dir=reference)
    resumed, full = pd.read_parquet(out / "results.parquet"), pd.read_parquet(reference / "results.parquet")
    assert (resumed.value == 123.0).sum() == 1 and len(resumed) == len(full)
    keep = resumed.value != 123.0
    pd.testing.assert_frame_equal(resumed[keep].reset_index(drop=True), full[keep].reset_index(drop=True))

    with caplog.at_level(logging.INFO, logger="diffexplain"):
        run_job(*args, out_dir=out)
    assert "nothing to do" in caplog.text
    run_job(*args, "resume=overwrite", out_dir=out)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "results.parquet"), full)


def kill_after_first_item(out: Path, *args: str) -> None:
    """Start the CLI, wait until its first item is saved, then kill -9 it."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *args, f"hydra.run.dir={out}"], cwd=ROOT,
                            env=CLI_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 300
        while not list((out / ".partial").glob("*/meta.json")):
            assert proc.poll() is None and time.time() < deadline, "the run ended before its first item was saved"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.slow  # fast cousin: test_an_interrupted_run_resumes_checking_the_config_keeping_finished_items_...
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


def test_two_sweeps_composed_together_get_two_directories():
    """The fast cousin of the concurrent-sweeps test below: the sweep directory's name is unique to the moment."""
    dirs = []
    for _ in range(2):
        with hydra_job(*TINY) as _cfg:
            from hydra.core.hydra_config import HydraConfig

            dirs.append(HydraConfig.get().sweep.dir)
    assert dirs[0] != dirs[1], dirs


@pytest.mark.slow  # fast cousin: test_two_sweeps_composed_together_get_two_directories
def test_two_sweeps_started_together_never_share_a_directory(tmp_path):
    cmd = [sys.executable, str(ROOT / "run.py"), "-m", "pipeline=generate", *TINY, f"paths.log_dir={tmp_path}"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    assert all(p.wait(timeout=600) == 0 for p in procs)
    runs = list((tmp_path / "multirun").glob("*/*/0/run.json"))
    assert len(runs) == 2


@pytest.mark.slow  # the default suite's DDP test: test_sweeps.py::test_ddp_on_two_cpu_processes_gives_the_rows_of_one
def test_ddp_with_fewer_items_than_ranks_finishes(tmp_path):
    out = tmp_path / "run"
    res = run_cli("pipeline=generate", *TINY, "runner=ddp", "runner.accelerator=cpu", "runner.devices=3",
                  f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stderr[-3000:]
    df = pd.read_parquet(out / "results.parquet")
    assert df.prompt.unique().tolist() == ["a red circle"] and len(df) == 2 * 2
    assert torch.isfinite(torch.tensor(df.value.to_numpy())).all()
