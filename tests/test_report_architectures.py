"""The report of a sweep over two architectures: the side-by-side table, the per-word head to head, CSVs, figures."""

import pandas as pd
import pytest

from diffexplain import io
from diffexplain.items import PromptItem
from diffexplain.reporting.evaluation import PHASES
from diffexplain.reporting.report import build
from diffexplain.reporting.tables import row, to_frame

ITEMS = [PromptItem(f"p{k}-s0-x", f"a red circle and a blue square {k}", 0) for k in range(3)]
STEPS = (3, 10, 17)  # one per third of 20 steps
WORDS = ("circle", "square")
ARCHS = {"shapes": ("unet", 0.0), "shapes_mmdit": ("sd3", 0.1)}  # model choice: family, shift of the explainer's AUC


def job(root, name, model, explainer):
    """A finished evaluate job on ``model``: AUC rows for the explainer and random, localisation of the whole map and,
    for per-word explainers, of each word's map."""
    family, shift = ARCHS[model]
    per_word = explainer != "rise"
    rows = []
    for n, item in enumerate(ITEMS):
        for step in STEPS:
            for who, s in ((explainer, shift), ("random", 0.0)):
                rows += [row(item, "deletion_auc", 0.5 - s + 0.01 * n, step, 100, who),
                         row(item, "insertion_auc", 0.5 + s + 0.01 * n, step, 100, who)]
            rows += [row(item, m, v, step, 100, explainer) for m, v in
                     (("iou_topk", 0.3 + shift), ("iou_chance", 0.1), ("mass_inside", 0.4), ("area_share", 0.2))]
            for w, word in enumerate(WORDS if per_word else ()):
                rows += [row(item, m, v, step, 100, explainer, token=word) for m, v in
                         (("iou_topk", 0.2 + shift + 0.1 * w), ("pointing_game", w), ("saliency_inside", 0.6),
                          ("saliency_outside", 0.3))]
    path = root / name
    path.mkdir(parents=True)
    to_frame(rows).to_parquet(path / "results.parquet")
    config = {"explainer": {"_target_": explainer, "steps": list(STEPS)}, "model": {"path": f"models/{model}"}}
    io.write_json(path / "run.json", {
        "pipeline": "evaluate", "choices": {"explainer": explainer, "model": model}, "config": config,
        "explainer": {"name": explainer}, "steps": list(STEPS), "timesteps": list(range(20)),
        "items": [it.as_dict() for it in ITEMS], "fingerprint": f"{model}-{explainer}",
        "architecture": {"family": family, "denoiser": "denoiser"}})


def test_two_architectures_side_by_side(tmp_path):
    for k, (model, explainer) in enumerate([("shapes", "rise"), ("shapes", "cross_attention"),
                                            ("shapes_mmdit", "rise"), ("shapes_mmdit", "cross_attention"),
                                            ("shapes_mmdit", "concept_attention")]):
        job(tmp_path, str(k), model, explainer)
    report = build(tmp_path, n_resamples=100)

    text = (tmp_path / "report.md").read_text()
    section = text.split("## Two architectures side by side")[1].split("\n## ")[0]
    assert "deletion AUC [CI]: shapes (unet)" in section and "deletion AUC [CI]: shapes_mmdit (sd3)" in section
    assert "### Per word, head to head" in section and "![architectures_words]" in section

    table = pd.read_csv(tmp_path / "architectures.csv").set_index(["configuration", "phase", "architecture"])
    assert len(table) == 5 * 3  # configurations named without the model's settings, one row per phase
    assert table.loc[("rise", "late", "shapes_mmdit (sd3)"), "deletion_auc"] == pytest.approx(0.41)
    assert table.loc[("rise", "late", "shapes (unet)"), "deletion_auc"] == pytest.approx(0.51)
    assert table.loc[("rise", "early", "shapes (unet)"), "iou_topk"] == pytest.approx(0.3)
    assert table.loc[("rise", "early", "shapes_mmdit (sd3)"), "both_win_share"] == 1.0

    words = report.tables["architecture_words"].set_index(["configuration", "phase", "architecture"]).sort_index()
    assert set(words.index) == {(c, p, a) for c in ("cross_attention", "concept_attention") for p in PHASES
                                for a in ("shapes (unet)", "shapes_mmdit (sd3)")
                                if (c, a) != ("concept_attention", "shapes (unet)")}
    attention = words.loc[("cross_attention", "middle")]
    assert attention.loc["shapes (unet)", "word_iou"] == pytest.approx(0.25)
    assert attention.loc["shapes_mmdit (sd3)", "word_iou"] == pytest.approx(0.35)
    assert attention.loc["shapes (unet)", "word_pointing"] == pytest.approx(0.5)
    assert attention.loc["shapes (unet)", "items"] == 3 and attention.loc["shapes (unet)", "maps"] == 6
    assert pd.read_csv(tmp_path / "architecture_words.csv").shape[0] == len(words)

    drawn = {p.name for p in report.figures}
    assert {"architectures_deletion_auc.png", "architectures_iou_topk.png", "architectures_words.png"} <= drawn
    assert all((tmp_path / "report" / name).is_file() for name in drawn)


def test_one_architecture_has_no_side_by_side(tmp_path):
    job(tmp_path, "0", "shapes", "rise")
    job(tmp_path, "1", "shapes", "cross_attention")
    report = build(tmp_path, n_resamples=100)
    assert "architectures" not in report.tables and not (tmp_path / "architectures.csv").exists()
    assert "Two architectures" not in (tmp_path / "report.md").read_text()
