"""pipeline=evaluate on the embedded model: the rows, tables and figures a researcher reads, and bad evaluate.*
values."""

import pandas as pd
import pytest
from conftest import cli_refusal, run_job

from diffexplain.io import load_run
from diffexplain.reporting import evaluation

PROMPT = "data.prompts=[a red circle and a blue square]"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluate") / "run"
    run_job("explainer=cam", "explainer.steps=[5,15]", PROMPT, "evaluate.sanity=true", "logger=none", out_dir=out)
    return load_run(out)


def test_rows_of_every_measure(run):
    df = run.results
    for metric in ("deletion_auc", "insertion_auc", "deletion_curve", "insertion_curve", "pointing_game",
                   "iou_topk", "mass_inside", "area_share", "step_spearman", "step_pearson", "sanity_rho"):
        assert (df.metric == metric).any(), metric
    assert set(df[df.metric.str.endswith("_auc")].explainer) == {"cam", "random", "magnitude", "edges", "randomised"}
    curve = df[(df.metric == "deletion_curve") & (df.explainer == "cam") & (df.step_index == 15)]
    assert curve.x.tolist() == pytest.approx([k / 16 for k in range(17)])
    steps = df[df.metric == "step_spearman"]
    assert steps[["step_index", "other_step"]].drop_duplicates().values.tolist() == [[5, 15]]
    stages = df[df.metric == "sanity_rho"].stage.unique().tolist()
    assert stages[0] == "conv_out" and len(stages) >= 5 and df[df.metric == "sanity_rho"].value.between(-1, 1).all()


def test_tables_and_figures(run):
    tables = evaluation.tables(run.results, 20, n_resamples=200)
    auc = tables["auc"].set_index(["explainer", "phase"])
    assert {"deletion_auc", "insertion_auc", "deletion_win_share", "insertion_p"} <= set(auc.columns)
    assert pd.isna(auc.loc[("random", "late"), "deletion_win_share"])
    assert 0 <= auc.loc[("cam", "late"), "deletion_win_share"] <= 1
    assert list(tables["sanity"].stage)[0] == "conv_out"
    figures = {p.name for p in (run.path / "figures").iterdir()}
    assert {"deletion_insertion.png", "step_correlation.png", "sanity.png"} <= figures
    assert run.info["evaluate"]["target"] and run.info["explainer"]["name"] == "cam"


@pytest.mark.parametrize("override, key", [("evaluate.target=nope", "evaluate.target"),
                                           ("evaluate.n_points=1", "evaluate.n_points"),
                                           ("evaluate.similarity=l2", "evaluate.similarity"),
                                           ("evaluate.protocol=paper evaluate.similarity=ssim", "evaluate.similarity"),
                                           ("evaluate.sanity=maybe", "evaluate.sanity")])
def test_bad_evaluate_values_are_one_line_exit_2(override, key, tmp_path, capsys):
    line = cli_refusal(*override.split(), "logger=none", out_dir=tmp_path / "run", capsys=capsys)
    assert line.startswith(f"error: {key}="), line


def test_the_summary_has_rows_only_for_the_phases_explained(run):
    """Steps 5 and 15 of 20 are early and late: no middle row, and the job's sanity beside both rows."""
    from diffexplain.reporting.report import ablation_table, load_jobs

    summary = ablation_table(load_jobs(run.path), 200)
    assert sorted(summary.phase) == ["early", "late"]
    assert summary.sanity_rho_full.notna().all() and summary.deletion_auc.notna().all()
