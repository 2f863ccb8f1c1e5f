"""Sweeps a researcher can publish from: resumable after kill -9, the same rows on one or two devices, the submitit
launcher, and a report at the end."""

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
from conftest import CLI_ENV, ROOT, run_cli, run_job

SWEEP = ("-m", "pipeline=evaluate", "model=tiny", "logger=none", "schedule.num_steps=3", "explainer.steps=[1,2]",
         "data.prompts=[a red circle and a blue square, a green triangle]", "explainer=cam,random,cross_attention")


def results(sweep) -> dict[str, pd.DataFrame]:
    return {job: pd.read_parquet(sweep / job / "results.parquet") for job in ("0", "1", "2")}


@pytest.mark.slow  # fast cousins: test_reliability.py::test_an_interrupted_run_resumes_... (a job's resume from its
# shards) and test_reliability.py::test_a_sweep_runs_its_valid_jobs_... (a re-run sweep does nothing for finished jobs)
def test_a_killed_sweep_resumes_with_the_same_command_to_the_same_results(tmp_path):
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *SWEEP, f"hydra.sweep.dir={killed}"], cwd=ROOT,
                            env=CLI_ENV,
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
    """The default suite's one DDP test (the others are slow: test_cli.py::test_ddp_splits_prompts_over_ranks_and_...,
    test_reliability.py::test_ddp_with_fewer_items_than_ranks_finishes): prompts split over 2 CPU ranks, merged once by
    rank 0 in the prompts' order, and the rows those of one process."""
    prompts = ["a red circle", "a blue square", "a green triangle"]
    args = ("pipeline=evaluate", "model=tiny", "logger=none", "schedule.num_steps=3", "explainer=cam",
            "explainer.steps=[2]", f"data.prompts=[{', '.join(prompts)}]")
    one, two = tmp_path / "one", tmp_path / "two"
    run_job(*args, out_dir=one)
    res = run_cli(*args, "runner=ddp", "runner.accelerator=cpu", "runner.devices=2", f"hydra.run.dir={two}")
    assert res.returncode == 0, res.stderr[-2000:]
    info = json.loads((two / "run.json").read_text())
    assert [it["prompt"] for it in info["items"]] == prompts
    key = ["prompt_id", "explainer", "metric", "step_index", "other_step", "x", "token", "stage"]
    a, b = (pd.read_parquet(d / "results.parquet").sort_values(key).reset_index(drop=True) for d in (one, two))
    assert sorted(b.prompt.unique()) == sorted(prompts) and not b.duplicated().any()
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-5)


def test_the_submitit_launcher_runs_a_sweep_that_ends_with_its_report(finished_sweep):
    sweep, explainers = finished_sweep
    for job, explainer in enumerate(explainers):
        df = pd.read_parquet(sweep / str(job) / "results.parquet")
        assert json.loads((sweep / str(job) / "run.json").read_text())["choices"]["explainer"] == explainer
        assert explainer in set(df.explainer) and not df.duplicated().any()
    summary = pd.read_parquet(sweep / "summary.parquet")
    assert set(summary.explainer) == set(explainers)
    assert "## Failed jobs" not in (sweep / "report.md").read_text()


def test_the_excluding_sweeper_skips_only_the_listed_combinations():
    from hydra_plugins.diffexplain_sweeper import ExcludingSweeper

    sweeper = ExcludingSweeper(exclude=[{"model": "shapes", "explainer": "concept_attention"}])
    jobs = [[f"model={m}", f"explainer={e}", "seed=0"] for m in ("shapes", "shapes_mmdit")
            for e in ("rise", "concept_attention")]
    sweeper.overrides, sweeper.batch_index = [jobs], 0
    assert sweeper.get_job_batch() == [jobs[0], jobs[2], jobs[3]]
