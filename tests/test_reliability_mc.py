"""Monte-Carlo reliability of sampled maps: split-half Spearman with the Spearman–Brown correction, DF-RISE's
``mc_reliability`` / ``n_masks_used`` and ``n_masks=auto``."""

import math

import pytest
import torch

from diffexplain.errors import UserError
from diffexplain.explainers import RISE
from diffexplain.metrics.reliability import spearman_brown, split_half_reliability
from diffexplain.schedules import Uniform
from diffexplain.similarity import SSIM

PROMPT = "a red circle and a blue square"


@pytest.fixture(scope="module")
def traj(tiny):
    return tiny.generate(PROMPT, 0, Uniform(4))


def test_spearman_brown_prophecy():
    assert spearman_brown(0.5) == pytest.approx(2 / 3)
    assert spearman_brown(1.0) == 1.0 and spearman_brown(0.0) == 0.0
    assert spearman_brown(-0.5) == -1.0  # floored where the prophecy diverges
    assert math.isnan(spearman_brown(float("nan")))


def test_a_deterministic_map_has_reliability_one():
    m = torch.rand(16, 16)
    assert split_half_reliability(m, m.clone()) == pytest.approx(1.0)
    assert math.isnan(split_half_reliability(torch.ones(4, 4), m[:4, :4]))  # a flat half has no order


def test_reliability_rises_with_the_number_of_masks_on_the_same_item(tiny, traj, one_thread):
    stats = {}
    for n in (128, 1024):
        rise = RISE(tiny, SSIM(), n_masks=n, batch_size=128)
        rise.explain(traj, [3])
        stats[n] = rise.last_stats[3]
        assert stats[n]["n_masks_used"] == n
    assert -1 <= stats[128]["mc_reliability"] < stats[1024]["mc_reliability"] <= 1


def test_the_halves_leave_the_map_unchanged(tiny, traj, one_thread):
    """The half-sums are extra bookkeeping: the full map is the same whatever the batches (and as before)."""
    a = RISE(tiny, SSIM(), n_masks=40, batch_size=7).explain(traj, [2])
    b = RISE(tiny, SSIM(), n_masks=40, batch_size=40).explain(traj, [2])
    assert torch.allclose(a, b, atol=1e-5)


def test_auto_stops_at_the_threshold_or_at_max_masks(tiny, traj, one_thread):
    auto = RISE(tiny, SSIM(), n_masks="auto", min_reliability=0.6, max_masks=1024, batch_size=64)
    sal = auto.explain(traj, [3])[0]
    used, rel = auto.last_stats[3]["n_masks_used"], auto.last_stats[3]["mc_reliability"]
    assert rel >= 0.6 and 64 <= used < 1024 and used % 64 == 0
    fixed = RISE(tiny, SSIM(), n_masks=int(used), batch_size=64)  # the same mask stream, stopped at the same count
    assert torch.allclose(sal, fixed.explain(traj, [3])[0], atol=1e-5)
    assert fixed.last_stats[3]["mc_reliability"] == pytest.approx(rel)
    capped = RISE(tiny, SSIM(), n_masks="auto", min_reliability=0.999, max_masks=128, batch_size=64)
    capped.explain(traj, [3])
    assert capped.last_stats[3]["n_masks_used"] == 128 and capped.last_stats[3]["mc_reliability"] < 0.999


@pytest.mark.parametrize("kwargs, key", [({"n_masks": "many"}, "explainer.n_masks"),
                                         ({"min_reliability": 1.0}, "explainer.min_reliability"),
                                         ({"max_masks": 1}, "explainer.max_masks")])
def test_bad_reliability_options_raise_user_errors(tiny, kwargs, key):
    with pytest.raises(UserError, match=key):
        RISE(tiny, SSIM(), **kwargs)


def test_gradient_shap_reports_its_reliability(tiny, traj, one_thread):
    from diffexplain.explainers import GradientShapExplainer

    make = lambda n: GradientShapExplainer(tiny, SSIM(), n_samples=n, internal_batch_size=8)
    small, large = make(4), make(32)
    a = small.explain(traj, [3])
    large.explain(traj, [3])
    assert torch.equal(a, make(4).explain(traj, [3]))  # still deterministic for its seed
    assert small.last_stats[3]["n_samples_used"] == 4 and large.last_stats[3]["n_samples_used"] == 32
    assert -1 <= small.last_stats[3]["mc_reliability"] <= large.last_stats[3]["mc_reliability"] <= 1
    single = make(1)
    single.explain(traj, [3])
    assert math.isnan(single.last_stats[3]["mc_reliability"])
