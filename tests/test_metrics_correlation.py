import math

import numpy as np
import pytest
import torch
from scipy import stats

from diffexplain.errors import UserError
from diffexplain.metrics.correlation import mask_correlation, mean_matrix, pearson, spearman, step_matrix


def test_spearman_and_pearson_agree_with_scipy():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(8, 8, generator=g)
    b = a + 0.5 * torch.rand(8, 8, generator=g)
    b[0, :3] = b[0, 3]  # ties
    assert spearman(a, b) == pytest.approx(stats.spearmanr(a.flatten(), b.flatten()).statistic)
    assert pearson(a, b) == pytest.approx(stats.pearsonr(a.flatten(), b.flatten()).statistic)


def test_rank_correlation_ignores_monotone_transforms_and_sign_flips_it():
    a = torch.rand(8, 8, generator=torch.Generator().manual_seed(1))
    assert spearman(a, a.exp() ** 3) == pytest.approx(1.0)
    assert pearson(a, a.exp() ** 3) < 0.999
    assert spearman(a, -a) == pytest.approx(-1.0)


def test_constant_maps_have_no_correlation():
    a = torch.rand(8, 8)
    assert math.isnan(spearman(a, torch.full((8, 8), 0.3))) and math.isnan(pearson(torch.zeros(8, 8), a))
    with pytest.raises(UserError, match="maps"):
        spearman(a, torch.rand(4, 4))


def test_step_matrix_is_symmetric_with_unit_diagonal():
    g = torch.Generator().manual_seed(2)
    base = torch.rand(8, 8, generator=g)
    maps = torch.stack([base + s * torch.rand(8, 8, generator=g) for s in (0.0, 0.1, 1.0, 10.0)] + [torch.zeros(8, 8)])
    m = step_matrix(maps)
    assert m.shape == (5, 5) and np.allclose(m[:4, :4], m[:4, :4].T)
    assert np.allclose(np.diag(m)[:4], 1) and np.isnan(m[4]).all() and np.isnan(m[:, 4]).all()
    assert m[0, 1] > m[0, 2] > m[0, 3], "more noise, less alike"
    assert m[0, 2] == pytest.approx(spearman(maps[0], maps[2]))


def test_map_against_a_truth_mask():
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:3] = True
    assert mask_correlation(mask.float() + 0.01 * torch.rand(8, 8), mask, "pearson") > 0.99
    assert mask_correlation(-mask.float(), mask) == pytest.approx(-1.0)


def test_mean_matrix_with_bootstrap_interval():
    rng = np.random.default_rng(0)
    mats = np.clip(0.6 + rng.normal(0, 0.1, (30, 4, 4)), -1, 1)
    mats[:, 3, 3] = np.nan
    s = mean_matrix(mats, n_resamples=1000)
    assert s.n == 30 and s.mean.shape == s.low.shape == s.high.shape == (4, 4)
    assert np.all(s.low[:3] <= s.mean[:3]) and np.all(s.mean[:3] <= s.high[:3])
    assert np.all(s.high[:3] - s.low[:3] < 0.1) and np.isnan(s.mean[3, 3])
