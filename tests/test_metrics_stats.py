import math

import numpy as np
import pytest

from diffexplain.errors import UserError
from diffexplain.metrics.stats import bootstrap_ci, compare_paired


def test_bootstrap_ci_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits, widths = [], []
    for k in range(200):
        x = rng.normal(1.0, 2.0, 40)
        low, high = bootstrap_ci(x, n_resamples=2000, seed=k)
        hits.append(low <= 1.0 <= high)
        widths.append(high - low)
    assert 0.88 <= np.mean(hits) <= 0.99
    assert np.mean(widths) == pytest.approx(2 * 1.96 * 2.0 / np.sqrt(40), rel=0.1)


def test_bootstrap_ci_is_seeded_and_handles_degenerate_input():
    x = np.random.default_rng(1).random(30)
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3) != bootstrap_ci(x, seed=4)
    assert bootstrap_ci(np.full(10, 0.25)) == pytest.approx((0.25, 0.25))
    assert bootstrap_ci([1.0, np.nan, 3.0, 2.0], n_resamples=500)[0] >= 1.0, "NaN items are dropped"
    assert all(math.isnan(v) for v in bootstrap_ci([0.5]))
    with pytest.raises(UserError, match="level"):
        bootstrap_ci(x, level=95)


def test_bootstrap_ci_of_matrices_per_entry():
    rng = np.random.default_rng(2)
    m = rng.normal(0.5, 0.1, (50, 3, 3))
    m[:, 0, 0] = 1.0
    m[::2, 2, 1] = np.nan
    low, high = bootstrap_ci(m, n_resamples=2000)
    mean = np.nanmean(m, axis=0)
    assert low.shape == high.shape == (3, 3) and np.all(low <= mean) and np.all(mean <= high)
    assert low[0, 0] == high[0, 0] == 1.0
    assert (high - low)[2, 1] > (high - low)[1, 1], "half the items: a wider interval"


def test_a_consistently_better_explainer():
    rng = np.random.default_rng(0)
    baseline = rng.random(40)
    explainer = baseline - 0.1 + rng.normal(0, 0.01, 40)  # deletion AUCs: lower is better
    c = compare_paired(explainer, baseline, higher_is_better=False)
    assert c.n == 40 and c.better_share == 1.0 and c.tie_share == 0.0
    assert c.mean_difference == pytest.approx(-0.1, abs=0.01) and c.ci_low < c.mean_difference < c.ci_high < 0
    assert c.p_value < 1e-6
    flipped = compare_paired(explainer, baseline, higher_is_better=True)
    assert flipped.better_share == 0.0 and flipped.p_value == c.p_value


def test_identical_scores_are_ties_with_p_one():
    x = np.random.default_rng(0).random(12)
    c = compare_paired(x, x.copy(), higher_is_better=True)
    assert (c.better_share, c.tie_share, c.mean_difference, c.ci_low, c.ci_high, c.p_value) == (0, 1, 0, 0, 0, 1)


def test_p_values_under_the_null_are_not_small_too_often():
    rng = np.random.default_rng(5)
    p = [compare_paired(rng.random(25), rng.random(25), True, n_resamples=100).p_value for _ in range(300)]
    assert 0.02 <= np.mean(np.array(p) < 0.05) <= 0.09


def test_pairs_with_nan_are_dropped_and_shapes_checked():
    c = compare_paired([0.1, np.nan, 0.3, 0.2], [0.2, 0.5, np.nan, 0.4], higher_is_better=False, n_resamples=200)
    assert c.n == 2 and c.better_share == 1.0 and c.as_dict()["n"] == 2
    with pytest.raises(UserError, match="scores"):
        compare_paired([0.1, 0.2], [0.1], True)
