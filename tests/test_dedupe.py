"""Each distinct job is computed once: the result fingerprint holds only what affects results, a sweep's twin job
reuses its finished twin's files, and the report lists the configuration once, naming both jobs."""

import json

import numpy as np
import pandas as pd
import pytest
from conftest import hydra_job, run_cli
from omegaconf import OmegaConf

from diffexplain import io
from diffexplain.items import PromptItem
from diffexplain.reporting.report import build
from diffexplain.reporting.tables import row, to_frame
from diffexplain.runner.resume import differing_keys, fingerprint, unused


def config(*overrides: str, model: str = "tiny") -> dict:
    """The resolved config (plain dict) of ``python run.py model=tiny logger=none overrides...``."""
    with hydra_job(f"model={model}", "logger=none", *overrides, out_dir="/tmp/diffexplain-dedupe") as cfg:
        return OmegaConf.to_container(cfg, resolve=True)


def test_cam_ignores_the_similarity_unless_its_target_is_the_similarity():
    ssim, cosine = config("explainer=cam", "similarity=ssim"), config("explainer=cam", "similarity=cosine")
    assert fingerprint(ssim) == fingerprint(cosine) and unused(ssim) == ["similarity"]
    assert differing_keys(ssim, cosine) == []
    on_sim = [config("explainer=cam", "explainer.target=similarity", f"similarity={s}") for s in ("ssim", "cosine")]
    assert fingerprint(on_sim[0]) != fingerprint(on_sim[1]) != fingerprint(ssim)
    assert any(k.startswith("similarity.") for k in differing_keys(*on_sim))


def test_the_demo_and_headline_sweeps_have_one_cam_configuration():
    def fingerprints(explainer, sims):
        return {fingerprint(config("experiment=demo", f"explainer={explainer}", f"similarity={s}", model="shapes"))
                for s in sims}

    for sims in (("ssim", "cosine"), ("ssim", "fid")):  # make demo; the README's headline sweep
        assert len(fingerprints("cam", sims)) == 1 and len(fingerprints("rise", sims)) == 2


@pytest.mark.parametrize("explainer", ["random", "cross_attention", "attention_relevance"])
def test_explainers_that_use_no_similarity_leave_it_out(explainer):
    assert fingerprint(config(f"explainer={explainer}", "similarity=ssim")) == \
        fingerprint(config(f"explainer={explainer}", "similarity=fid"))


def test_rise_keeps_the_similarity_and_explain_ignores_evaluate():
    assert fingerprint(config("explainer=rise", "similarity=ssim")) != fingerprint(config("explainer=rise",
                                                                                          "similarity=cosine"))
    assert fingerprint(config("evaluate.n_points=5")) != fingerprint(config("evaluate.n_points=9"))
    assert fingerprint(config("pipeline=explain", "evaluate.n_points=5")) == \
        fingerprint(config("pipeline=explain", "evaluate.n_points=9"))


def test_generate_ignores_explainer_and_similarity_and_resumes_across_them(tmp_path):
    from diffexplain.pipelines.generate import GeneratePipeline
    from diffexplain.runner.writer import OutputWriter

    a = config("pipeline=generate", "explainer=rise", "similarity=ssim")
    b = config("pipeline=generate", "explainer=cam", "explainer.steps=[1]", "similarity=fid")
    assert fingerprint(a) == fingerprint(b) and differing_keys(a, b) == []
    assert set(unused(a)) == {"explainer", "similarity", "evaluate"}
    assert fingerprint(a) != fingerprint(config("pipeline=generate", "schedule.num_steps=4"))
    # a finished generate job is this job's results: nothing to do, not a refusal
    items = [PromptItem("p0-s0-x", "a red circle", 0)]
    io.write_json(tmp_path / "run.json", {"config": a, "items": [dict(it.as_dict(), item_id=it.item_id)
                                                                 for it in items]})
    assert OutputWriter(tmp_path, GeneratePipeline(None), items, {}, b).prepare("auto") is None


ITEMS = [PromptItem(f"p{k}-s0-x", f"prompt {k}", 0) for k in range(3)]


def finished_job(root, name, explainer, similarity, fp, unused_nodes, shift=0.0, reused=None):
    """A hand-made finished evaluate job (AUC rows vs random at steps 15 and 18 of 20, maps) with run.json."""
    path = root / name
    path.mkdir(parents=True)
    rows = [row(it, f"{game}_auc", 0.5 + sign * (s + 0.01 * n), step, 100, who)
            for n, it in enumerate(ITEMS) for step in (15, 18)
            for who, s in ((explainer, shift), ("random", 0.0)) for game, sign in (("deletion", -1), ("insertion", 1))]
    to_frame(rows).to_parquet(path / "results.parquet")
    rng = np.random.default_rng(0)
    io.write_npz(path / "heatmaps.npz", {f"{it.item_id}/{explainer}/{s}": rng.random((8, 8)).astype(np.float32)
                                         for it in ITEMS for s in (15, 18)})
    info = {"pipeline": "evaluate", "choices": {"explainer": explainer, "similarity": similarity},
            "config": {"explainer": {"_target_": explainer, "steps": [15, 18]},
                       "similarity": {"_target_": similarity, "name": similarity}},
            "fingerprint": fp, "unused": unused_nodes, "explainer": {"name": explainer}, "steps": [15, 18],
            "timesteps": list(range(20)), "items": [dict(it.as_dict(), item_id=it.item_id) for it in ITEMS]}
    if reused:
        info["reused"] = reused
    io.write_json(path / "run.json", info)


def test_the_report_lists_twin_jobs_once_naming_both(tmp_path):
    finished_job(tmp_path, "0", "rise", "ssim", "r-ssim", [], shift=0.1)
    finished_job(tmp_path, "1", "cam", "ssim", "cam", ["similarity"], shift=0.05)
    finished_job(tmp_path, "2", "rise", "cosine", "r-cos", [], shift=0.0)
    finished_job(tmp_path, "3", "cam", "cosine", "cam", ["similarity"], shift=0.05, reused="1")
    report = build(tmp_path, n_resamples=200)
    s = report.summary
    assert sorted(s.label.unique()) == ["cam", "rise sim=cosine", "rise sim=ssim"]
    cam = s[s.label == "cam"]
    assert len(cam) == cam.phase.nunique() == 1 and cam.job.iloc[0] == "1, 3" and cam.similarity.isna().all()
    assert not s.duplicated(["label", "phase"]).any()
    cross = report.tables["cross_explainer"]
    assert not (cross.a == cross.b).any() and len(cross[cross.method == "spearman"]) == 3
    text = (tmp_path / "report.md").read_text()
    assert "4 finished job(s) (3 with distinct results)" in text and "- jobs 1, 3 (cam)" in text


def test_a_sweep_computes_cam_once_and_the_twin_reuses_its_files(tmp_path):
    sweep = tmp_path / "sweep"
    res = run_cli("-m", "model=tiny", "logger=none", "schedule.num_steps=2", "data.prompts=[a red circle]",
                  "explainer=cam", "similarity=ssim,cosine", "explainer.steps=[1]", f"hydra.sweep.dir={sweep}")
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert "job 1: same results as job 0 (similarity=cosine vs ssim" in out and "); reused" in out
    assert out.count("Predicting") <= 1  # only job 0 ran the model
    first, second = (json.loads((sweep / j / "run.json").read_text()) for j in ("0", "1"))
    assert second["reused"] == "0" and "reused" not in first
    assert second["fingerprint"] == first["fingerprint"] and second["choices"]["similarity"] == "cosine"
    assert second["items"] == first["items"] and second["unused"] == ["similarity"]
    a, b = (pd.read_parquet(sweep / j / "results.parquet") for j in ("0", "1"))
    pd.testing.assert_frame_equal(a, b)
    assert a.similarity.isna().all()  # DF-CAM's rows name no similarity: it used none
    with np.load(sweep / "0" / "heatmaps.npz") as x, np.load(sweep / "1" / "heatmaps.npz") as y:
        assert x.files == y.files and all(np.array_equal(x[k], y[k]) for k in x.files)
    for what in ("images", "figures", "tables"):
        assert sorted(p.relative_to(sweep / "0") for p in (sweep / "0" / what).rglob("*")) == \
            sorted(p.relative_to(sweep / "1") for p in (sweep / "1" / what).rglob("*"))
    summary = pd.read_parquet(sweep / "summary.parquet")
    assert len(summary) == summary.phase.nunique() and set(summary.job) == {"0, 1"} and set(summary.label) == {"cam"}
