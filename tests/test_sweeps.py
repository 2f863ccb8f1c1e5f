"""Sweeps a researcher can publish from: resumable after kill -9, the same rows on one or two devices, the submitit
launcher, and a report at the end."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd

from conftest import ROOT, run_cli

SWEEP = ("-m", "pipeline=evaluate", "model=tiny", "logger=none", "schedule.num_steps=3", "explainer.steps=[1,2]",
         "data.prompts=[a red circle and a blue square, a green triangle]", "explainer=cam,random,cross_attention")


def results(sweep) -> dict[str, pd.DataFrame]:
    return {job: pd.read_parquet(sweep / job / "results.parquet") for job in ("0", "1", "2")}


def test_a_killed_sweep_resumes_with_the_same_command_to_the_same_results(tmp_path):
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *SWEEP, f"hydra.sweep.dir={killed}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 600
        while not list((killed / "1" / ".partial").glob("*/meta.json")):  # job 0 done, job 1 half way
            assert proc.poll() is None and time.time() < deadline, "the sweep ended before it could be killed"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (killed / "0" / "run.json").is_file() and not (killed / "2").exists()

    resumed = run_cli(*SWEEP, f"hydra.sweep.dir={killed}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"nothing to do: {killed / '0'}" in resumed.stdout
    assert run_cli(*SWEEP, f"hydra.sweep.dir={reference}").returncode == 0
    for job, df in results(killed).items():
        pd.testing.assert_frame_equal(df, results(reference)[job])
        assert not df.duplicated().any()
    summary = pd.read_parquet(killed / "summary.parquet")
    assert set(summary.explainer) == {"cam", "random", "cross_attention"}
    assert "## Failed jobs" not in (killed / "report.md").read_text()


def test_ddp_on_two_cpu_processes_gives_the_rows_of_one(tmp_path):
    args = ("pipeline=evaluate", "model=tiny", "logger=none", "schedule.num_steps=3", "explainer=cam",
            "explainer.steps=[2]", "data.prompts=[a red circle, a blue square, a green triangle]")
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_cli(*args, f"hydra.run.dir={one}").returncode == 0
    res = run_cli(*args, "runner=ddp", "runner.accelerator=cpu", "runner.devices=2", f"hydra.run.dir={two}")
    assert res.returncode == 0, res.stderr[-2000:]
    key = ["prompt_id", "explainer", "metric", "step_index", "other_step", "x", "token", "stage"]
    a, b = (pd.read_parquet(d / "results.parquet").sort_values(key).reset_index(drop=True) for d in (one, two))
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-5)


def test_the_submitit_launcher_runs_a_two_job_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    res = run_cli("-m", "hydra/launcher=local", "pipeline=generate", "model=tiny", "logger=none",
                  "data.prompts=[a red circle]", "schedule.num_steps=2,3", f"hydra.sweep.dir={sweep}")
    assert res.returncode == 0, res.stderr[-2000:]
    steps = sorted(len(pd.read_parquet(sweep / job / "results.parquet").step_index.unique()) for job in ("0", "1"))
    assert steps == [2, 3]
    assert (sweep / "report.md").is_file()
