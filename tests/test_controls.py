"""Trust beyond random: input-only and randomised-model controls, the renoise substrate, the verdicts of the tables,
and sanity with confidence (CIs, noise floor, verdict)."""

from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch

from diffexplain.errors import UserError
from diffexplain.explainers import DFCAM, RISE
from diffexplain.items import PromptItem
from diffexplain.metrics.controls import edges, input_maps, magnitude
from diffexplain.metrics.games import play_games
from diffexplain.metrics.sanity import map_similarity
from diffexplain.metrics.substrates import substrate
from diffexplain.models.outcomes import Outcome
from diffexplain.pipelines.evaluate import EvaluateOptions, EvaluatePipeline, is_sampled
from diffexplain.reporting import evaluation
from diffexplain.schedules import Uniform
from diffexplain.similarity import SSIM, Cosine

PROMPT = "a red circle and a blue square"


@pytest.fixture(scope="module")
def traj(tiny):
    return tiny.generate(PROMPT, 0, Uniform(4))


# -- input-only maps ---------------------------------------------------------------------------------------------------
def test_input_maps_need_only_the_latent():
    z = torch.zeros(4, 8, 8)
    z[:, :, 4:] = 2.0
    z[1] *= -1
    assert torch.equal(magnitude(z), z.abs().sum(0))
    e = edges(z)
    assert e[:, :3].abs().max() == 0 and e[:, 5:].abs().max() == 0  # flat away from the step
    assert (e[:, 3:5] > 0).all()  # the step between columns 3 and 4
    assert set(input_maps(z)) == {"magnitude", "edges"} and edges(torch.ones(4, 8, 8)).abs().max() == 0


# -- the renoise substrate ---------------------------------------------------------------------------------------------
def test_renoise_has_the_steps_variance_and_is_seeded(tiny, traj):
    """DDIM (variance-preserving, c = 1): the pure-noise latent at row i is √(1−ᾱ_i)·ε."""
    i = 1
    alpha_bar = float(traj.alpha_bars[i])
    assert float(traj.input_scales[i]) == 1.0 and 0 < alpha_bar < 1
    big = torch.cat([tiny.noise_latent(traj, i, torch.Generator().manual_seed(s)).flatten() for s in range(200)])
    assert big.var().item() == pytest.approx(1 - alpha_bar, rel=0.05)
    a = tiny.noise_latent(traj, i, torch.Generator().manual_seed(7))
    assert torch.equal(a, tiny.noise_latent(traj, i, torch.Generator().manual_seed(7)))
    assert not torch.equal(a, tiny.noise_latent(traj, i, torch.Generator().manual_seed(8)))
    z = traj.latents[i][None]
    assert torch.equal(substrate(z, "renoise", noise=a)[0], a)
    with pytest.raises(UserError, match="substrate"):
        substrate(z, "renoise")


def test_renoise_games_delete_into_the_same_noise_for_every_map(tiny, traj):
    i, n = 1, 5
    noise = tiny.noise_latent(traj, i, torch.Generator().manual_seed(3))
    outcome = Outcome(tiny, traj, i, "output")
    maps = {"a": torch.rand(8, 8), "b": torch.rand(8, 8)}
    curves = play_games(outcome, Cosine(), maps, n_points=n, substrate="renoise", noise=noise)
    with torch.no_grad():
        renoised = Cosine()(outcome(noise[None].to(tiny.device)).float(), outcome.reference().float())
    for name in maps:  # deletion ends, insertion starts at the fully re-noised latent: the same for both maps
        assert curves[name]["deletion"].y[-1] == pytest.approx(float(renoised[0]), abs=1e-5)
        assert curves[name]["insertion"].y[0] == pytest.approx(float(renoised[0]), abs=1e-5)
    assert curves["a"]["deletion"].y[0] == pytest.approx(1.0, abs=1e-4)


# -- the pipeline: controls, renoise, sanity floor ---------------------------------------------------------------------
def test_every_evaluation_plays_the_controls_and_writes_reliability_and_floor(tiny, one_thread):
    explainer = partial(RISE, n_masks=16, batch_size=16, steps=[2, 3])
    pipe = EvaluatePipeline(Uniform(4), explainer, Cosine(),
                            evaluate={"n_points": 5, "substrate": "renoise", "sanity": True, "sanity_stages": "full",
                                      "bootstrap": 100})
    pipe.setup(tiny)
    out = pipe.run(tiny, PromptItem("p0", PROMPT, 0))
    df = pd.DataFrame(out.rows)
    aucs = df[df.metric == "deletion_auc"]
    assert set(aucs.explainer) == {"rise", "random", "magnitude", "edges", "randomised"}
    assert (aucs.groupby("explainer").size() == 2).all()
    rel = df[df.metric == "mc_reliability"]
    assert len(rel) == 2 and rel.value.between(-1, 1).all()
    assert df[df.metric == "n_masks_used"].value.tolist() == [16.0, 16.0]
    assert len(df[df.metric == "sanity_floor"]) == 2 and len(df[df.metric == "sanity_rho"]) == 2
    assert pipe.describe()["evaluate"]["controls"] == ["magnitude", "edges", "randomised"]


def test_controls_can_be_switched_off_and_deterministic_maps_have_floor_one(tiny, one_thread):
    pipe = EvaluatePipeline(Uniform(4), partial(DFCAM, steps=[3]), None,
                            evaluate={"n_points": 3, "controls": [], "sanity": True, "sanity_stages": "full"})
    pipe.setup(tiny)
    df = pd.DataFrame(pipe.run(tiny, PromptItem("p0", PROMPT, 0)).rows)
    assert set(df[df.metric == "deletion_auc"].explainer) == {"cam", "random"}
    assert df[df.metric == "sanity_floor"].value.tolist() == [1.0]
    assert not (df.metric == "mc_reliability").any()  # deterministic: reliability 1 by construction, no row
    assert not is_sampled(pipe.explainer) and is_sampled(RISE(tiny, SSIM()))


@pytest.mark.parametrize("kwargs, key", [({"controls": ["nope"]}, "evaluate.controls"),
                                         ({"sanity_similarity": "pearson"}, "evaluate.sanity_similarity"),
                                         ({"substrate": "noise"}, "evaluate.substrate")])
def test_bad_control_options_are_user_errors(kwargs, key):
    with pytest.raises(UserError, match=key):
        EvaluateOptions(**kwargs)


def test_validation_knows_the_new_keys():
    from diffexplain.validation import EVALUATE, SPECS, check_node

    check_node("evaluate", {"controls": ["magnitude"], "sanity_similarity": "ssim", "substrate": "renoise"}, EVALUATE)
    check_node("explainer", {"n_masks": "auto", "min_reliability": 0.8, "max_masks": 512},
               SPECS["diffexplain.explainers.RISE"])
    with pytest.raises(UserError, match="evaluate.controls"):
        check_node("evaluate", {"controls": ["nope"]}, EVALUATE)
    with pytest.raises(UserError, match="explainer.n_masks"):
        check_node("explainer", {"n_masks": "lots"}, SPECS["diffexplain.explainers.RISE"])


# -- the tables' verdicts ----------------------------------------------------------------------------------------------
def _rows(scores: dict[str, tuple[float, float]], n: int = 8) -> pd.DataFrame:
    """deletion/insertion AUC rows of ``n`` late items per map: {name: (deletion mean, insertion mean)}."""
    rng, rows = np.random.default_rng(0), []
    for name, (d, i) in scores.items():
        for k in range(n):
            for metric, mean in (("deletion_auc", d), ("insertion_auc", i)):
                rows.append({"prompt_id": f"p{k}", "seed": 0, "step_index": 17, "explainer": name,
                             "similarity": "ssim" if name == "rise" else None, "metric": metric,
                             "value": mean + 0.01 * rng.standard_normal()})
    return pd.DataFrame(rows)


def test_the_verdict_needs_more_than_beating_random():
    base = {"random": (0.40, 0.40), "edges": (0.35, 0.42), "randomised": (0.38, 0.40)}
    loses = evaluation.auc_table(_rows({**base, "rise": (0.25, 0.45), "magnitude": (0.15, 0.48)}), 20, 500)
    row = loses.set_index("explainer").loc["rise"]
    assert row.beats_random == 1 and row.beats_input_controls == 0 and row.beats_randomised == 1
    assert "NOT the input-only controls" in row.verdict and "magnitude on deletion and insertion" in row.verdict
    assert row.magnitude_both_win_share == 0 and row.edges_both_win_share == 1
    assert row.magnitude_deletion_diff == pytest.approx(0.10, abs=0.02)
    control = loses.set_index("explainer").loc["magnitude"]  # a control is compared with random only
    assert control.both_win_share == 1 and pd.isna(control.verdict) and pd.isna(control.edges_deletion_diff)
    wins = evaluation.auc_table(_rows({**base, "rise": (0.10, 0.50), "magnitude": (0.15, 0.48)}), 20, 500)
    row = wins.set_index("explainer").loc["rise"]
    assert row.beats_input_controls == 1 and row.verdict.startswith("beats random and the input-only controls")
    table = evaluation.controls_table(wins)
    assert list(table.explainer) == ["rise"] and "magnitude_both_win_share" in table


def test_sanity_table_has_cis_a_noise_floor_and_a_verdict():
    rows = []
    for stage_rho, name in ((0.1, "low"), (0.6, "high"), (0.3, "mid")):
        for k in range(10):
            rows.append({"prompt_id": f"p{k}", "seed": 0, "step_index": 17, "explainer": name, "similarity": None,
                         "metric": "sanity_rho", "stage": "conv_in_and_embeddings",
                         "value": stage_rho + 0.02 * (k - 4.5)})
            rows.append({"prompt_id": f"p{k}", "seed": 0, "step_index": 17, "explainer": name, "similarity": None,
                         "metric": "sanity_floor", "stage": None, "value": 0.9})
    table = evaluation.sanity_table(pd.DataFrame(rows), 500).set_index("explainer")
    assert table.loc["low", "verdict"] == "passes" and table.loc["high", "verdict"] == "fails"
    assert table.loc["mid", "verdict"] == "undecided"
    assert table.loc["low", "ci_low"] < 0.1 < table.loc["low", "ci_high"] and table.loc["low", "floor"] == 0.9
    assert evaluation.sanity_verdict(0.0, 0.1, floor=0.2).startswith("undecided")  # the map does not reproduce itself


def test_sanity_similarities():
    a = torch.rand(16, 16)
    assert map_similarity(a, a, "ssim") == pytest.approx(1.0)
    assert map_similarity(a, 2 * a + 1, "ssim") == pytest.approx(1.0, abs=1e-6)  # min-max normalised
    assert map_similarity(a, -a, "abs_spearman") == pytest.approx(1.0) and map_similarity(a, -a) == pytest.approx(-1)
    assert np.isnan(map_similarity(torch.ones(16, 16), a, "ssim"))


def test_a_maps_scores_do_not_depend_on_which_references_were_cached(tiny, one_thread, tmp_path):
    """What a resumed sweep relies on: with some references read from the sweep's cache and others computed, every
    row is bit for bit the row of a run that computed them all."""
    pipe = EvaluatePipeline(Uniform(4), partial(DFCAM, steps=[2, 3]), None, evaluate={"n_points": 5})
    pipe.setup(tiny)
    pipe.use_cache(tmp_path, {"model": {}, "schedule": {}, "explainer": {"name": "cam"}})
    item = PromptItem("p0", PROMPT, 0)
    first = pd.DataFrame(pipe.run(tiny, item).rows)
    for name in ("random", "edges"):
        pipe._path(item, name).unlink()
    again = pd.DataFrame(pipe.run(tiny, item).rows)
    key, cols = ["explainer", "metric", "step_index", "x"], ["explainer", "metric", "step_index", "x", "value"]
    a, b = (df.sort_values(key)[cols].reset_index(drop=True) for df in (first, again))
    assert set(a.explainer) == {"cam", "random", "magnitude", "edges", "randomised"}
    pd.testing.assert_frame_equal(a, b, check_exact=True)
