"""The sweep report on hand-made job directories: labels, the ablation table, cross-explainer correlations, notes."""

import json

import numpy as np
import pandas as pd
import pytest

from diffexplain import io
from diffexplain.items import PromptItem
from diffexplain.reporting.report import build
from diffexplain.reporting.tables import row, to_frame

ITEMS = [PromptItem(f"p{k}-s0-x", f"prompt {k}", 0) for k in range(4)]


def job(root, name, explainer, maps, items=ITEMS, extra_config=None, auc_shift=0.0):
    """A finished evaluate job: AUC rows vs random for steps 15 and 18 of 20, and its maps."""
    path = root / name
    path.mkdir(parents=True)
    rows = []
    for n, item in enumerate(items):
        for step in (15, 18):
            for who, shift in ((explainer, auc_shift), ("random", 0.0)):
                rows += [row(item, "deletion_auc", 0.5 - shift + 0.01 * n, step, 100, who),
                         row(item, "insertion_auc", 0.5 + shift + 0.01 * n, step, 100, who)]
    to_frame(rows).to_parquet(path / "results.parquet")
    io.write_npz(path / "heatmaps.npz", {f"{it.item_id}/{explainer}/{step}": maps(it, step)
                                         for it in items for step in (15, 18)})
    config = {"explainer": {"_target_": explainer, "steps": [15, 18], **(extra_config or {})}, "model": {"x": 1}}
    io.write_json(path / "run.json", {"pipeline": "evaluate", "choices": {"explainer": explainer.split("_")[0]},
                                      "config": config, "explainer": {"name": explainer}, "steps": [15, 18],
                                      "timesteps": list(range(20)), "items": [it.as_dict() for it in items]})
    return path


def pattern(item, step):
    rng = np.random.default_rng(abs(hash((item.item_id, step))) % 2**32)
    return rng.random((8, 8)).astype(np.float32)


def test_report_of_a_sweep(tmp_path):
    job(tmp_path, "0", "rise", pattern, extra_config={"target": "x0"}, auc_shift=0.1)
    job(tmp_path, "1", "rise", pattern, extra_config={"target": "final"}, auc_shift=0.0)
    job(tmp_path, "2", "cam", lambda it, s: -pattern(it, s), auc_shift=-0.1)
    (tmp_path / "3").mkdir()
    (tmp_path / "3" / "failed.json").write_text(json.dumps({"overrides": ["explainer=lime"], "error": "boom"}))
    report = build(tmp_path, n_resamples=200)

    summary = report.summary.set_index(["label", "phase"])
    assert set(summary.index.get_level_values(0)) == {"rise target=x0", "rise target=final", "cam"}
    late = summary.xs("late", level="phase")
    assert late.loc["rise target=x0", "deletion_win_share"] == 1.0
    assert late.loc["cam", "insertion_win_share"] == 0.0
    assert late.loc["rise target=x0", "both_win_share"] == 1.0 and late.loc["cam", "both_win_share"] == 0.0
    assert late.loc["rise target=x0", "deletion_auc"] == pytest.approx(0.415)
    cross = report.tables["cross_explainer"]
    spearman = cross[cross.method == "spearman"].set_index(["a", "b"])["mean"]
    assert spearman[("rise target=x0", "rise target=final")] == pytest.approx(1.0)
    assert spearman[("rise target=x0", "cam")] == pytest.approx(-1.0)
    assert report.failed and "boom" in report.failed[0]
    text = (tmp_path / "report.md").read_text()
    assert "## Failed jobs" in text and "Cross-explainer" in text
    assert pd.read_parquet(tmp_path / "summary.parquet").shape[0] == len(report.summary)
    assert {p.name for p in report.figures} >= {"heatmaps.png", "cross_explainer.png"}


def test_jobs_with_other_prompts_are_reported_and_compared_on_what_they_share(tmp_path):
    job(tmp_path, "0", "rise", pattern)
    job(tmp_path, "1", "cam", pattern, items=ITEMS[:2])
    report = build(tmp_path, n_resamples=200)
    assert report.notes and "2 of 2 shared" in report.notes[0]
    cross = report.tables["cross_explainer"]
    assert cross.n.max() == 2 * 2  # 2 shared prompts x 2 steps
