"""The command line as a user runs it: output contract, W&B offline run, exit 2 on bad input, resume."""

import json

import numpy as np
import pandas as pd

from conftest import run_cli
from diffexplain.io import load_run
from diffexplain.reporting.tables import COLUMNS


def test_generate_writes_the_output_contract(tmp_path):
    out = tmp_path / "run"
    res = run_cli("pipeline=generate", "model=tiny", "data.prompts=[a red circle]", "logger=none",
                  "schedule.num_steps=4", f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stderr[-2000:]
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
    res = run_cli("pipeline=generate", "model=tiny", "data.prompts=[a blue square]", "schedule.num_steps=2",
                  f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stderr[-2000:]
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    media = run_dir / "files" / "media"
    assert list((media / "images").rglob("*.png")), "no figures logged"
    assert list((media / "table").rglob("results_*.table.json")), "no results table logged"


def test_bad_value_prints_one_line_exits_2_and_leaves_no_outputs(tmp_path):
    out = tmp_path / "run"
    res = run_cli("pipeline=generate", "model=tiny", "schedule.num_steps=0", "logger=none", f"hydra.run.dir={out}")
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines == ["error: schedule.num_steps=0 is invalid: an integer in [1, 1000]"]
    assert not out.exists()


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


def test_a_sweep_logs_one_wandb_run_per_job_in_one_group_with_its_auc_table(tmp_path):
    sweep = tmp_path / "sweep"
    res = run_cli("-m", "model=tiny", "schedule.num_steps=3", "explainer.steps=[2]", "data.prompts=[a red circle]",
                  "explainer=random,cam", f"hydra.sweep.dir={sweep}")
    assert res.returncode == 0, res.stderr[-2000:]
    runs = [next((sweep / str(job) / "wandb").glob("offline-run-*")) for job in (0, 1)]
    group = f"sweep-{__import__('hashlib').sha1(str(sweep.resolve()).encode()).hexdigest()[:6]}"
    for job, run in enumerate(runs):
        record = next(run.glob("run-*.wandb")).read_bytes()
        assert group.encode() in record and f"explainer={['random', 'cam'][job]}".encode() in record
        assert list((run / "files" / "media" / "table" / "tables").glob("auc_*.table.json")), "no AUC table"
