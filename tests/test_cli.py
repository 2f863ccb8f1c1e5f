"""A job's output contract, its W&B offline run, and a sweep's W&B runs (the jobs run in-process; the sweep is the
session's one finished sweep, run by ``python run.py -m``). The exit-2 contract on bad input: test_refusals.py."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli, run_job

from diffexplain.io import load_run
from diffexplain.reporting.tables import COLUMNS


def test_generate_writes_the_output_contract(tmp_path):
    out = tmp_path / "run"
    run_job("pipeline=generate", "model=tiny", "data.prompts=[a red circle]", "logger=none", "schedule.num_steps=4",
            out_dir=out)
    df = pd.read_parquet(out / "results.parquet")
    assert list(df.columns) == list(COLUMNS)
    assert set(df.metric) == {"ssim_to_final", "cosine_to_final"}
    assert sorted(df[df.metric == "ssim_to_final"].step_index.tolist()) == [0, 1, 2, 3]
    assert df.loc[df.step_index == 3, "value"].between(-1, 1).all()
    info = json.loads((out / "run.json").read_text())
    assert len(info["timesteps"]) == 4 and info["timesteps"] == sorted(info["timesteps"], reverse=True)
    (item,) = info["items"]
    assert item["prompt"] == "a red circle" and item["seed"] == 0
    run = load_run(out)
    pid = item["prompt_id"]
    assert set(run.images) == {f"{pid}/final"} | {f"{pid}/x0/{i}" for i in range(4)}
    final = run.images[f"{pid}/final"]
    assert final.dtype == np.uint8 and final.shape == (16, 16, 3)
    assert (out / "images" / pid / "final.webp").is_file()
    assert list(run.heatmaps) == []
    assert run.results.equals(df)
    assert (out / "figures" / f"{pid}_x0.png").stat().st_size > 0
    assert not (out / ".partial").exists()


def test_default_logger_writes_an_offline_wandb_run_with_images_and_table(tmp_path):
    out = tmp_path / "run"
    run_job("pipeline=generate", "model=tiny", "data.prompts=[a blue square]", "schedule.num_steps=2", out_dir=out)
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    media = run_dir / "files" / "media"
    assert list((media / "images").rglob("*.png")), "no figures logged"
    assert list((media / "table").rglob("results_*.table.json")), "no results table logged"


# the bad-value contract (one line, exit 2, no outputs): test_refusals.py, in-process and as `python run.py`


@pytest.mark.slow  # the default suite's DDP test: test_sweeps.py::test_ddp_on_two_cpu_processes_gives_the_rows_of_one
def test_ddp_splits_prompts_over_ranks_and_merges_once(tmp_path):
    out = tmp_path / "run"
    prompts = ["a red circle", "a blue square", "a green triangle"]
    res = run_cli("pipeline=generate", "model=tiny", f"data.prompts=[{', '.join(prompts)}]", "schedule.num_steps=2",
                  "logger=none", "runner=ddp", "runner.accelerator=cpu", "runner.devices=2", f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stderr[-2000:]
    info = json.loads((out / "run.json").read_text())
    assert [it["prompt"] for it in info["items"]] == prompts
    df = pd.read_parquet(out / "results.parquet")
    assert sorted(df.prompt.unique()) == sorted(prompts) and len(df) == 3 * 2 * 2


def test_a_sweep_logs_one_wandb_run_per_job_in_one_group_with_its_auc_table(finished_sweep):
    sweep, explainers = finished_sweep
    runs = [next((sweep / str(job) / "wandb").glob("offline-run-*")) for job in range(len(explainers))]
    group = f"sweep-{hashlib.sha1(str(sweep.resolve()).encode()).hexdigest()[:6]}"
    for explainer, run in zip(explainers, runs):
        record = next(run.glob("run-*.wandb")).read_bytes()
        assert group.encode() in record and f"explainer={explainer}".encode() in record
        assert list((run / "files" / "media" / "table" / "tables").glob("auc_*.table.json")), "no AUC table"
