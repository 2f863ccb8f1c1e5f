"""Is an explainer better than a baseline? Paired comparisons over items and bootstrap confidence intervals.

Items are paired: the explainer and the baseline (e.g. the random map) scored on the same prompt, seed and step.
Intervals are percentile bootstraps over items (scipy.stats.bootstrap, 10 000 resamples, seeded), so they are
reproducible; the test is the Wilcoxon signed-rank test (two-sided) of the paired differences.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import stats

from diffexplain.errors import check

N_RESAMPLES = 10_000
LEVEL = 0.95


def bootstrap_ci(values, n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = 0):
    """Percentile-bootstrap confidence interval ``(low, high)`` of the mean over items (axis 0) of ``values``.

    ``values`` [N] gives floats (NaN items dropped); [N, ...] (e.g. one correlation matrix per item) gives arrays
    [...], resampling whole items and averaging with NaNs ignored. Fewer than 2 items give NaN.
    """
    v = np.asarray(values, dtype=np.float64)
    check(v.ndim >= 1, "values", v.shape, "an array with an item axis [N, ...]")
    check(isinstance(n_resamples, int) and n_resamples >= 1, "n_resamples", n_resamples, "an integer >= 1")
    check(0 < level < 1, "level", level, "a confidence level in (0, 1)")
    if v.ndim == 1:
        v = v[~np.isnan(v)]
    if len(v) < 2:
        nan = np.full(v.shape[1:], np.nan)
        return (float(nan), float(nan)) if v.ndim == 1 else (nan, nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN entries of a resample
        res = stats.bootstrap((v,), np.nanmean, n_resamples=n_resamples, batch=max(1, 2**22 // v.size),
                              vectorized=True, axis=0, confidence_level=level, method="percentile",
                              rng=np.random.default_rng(seed))
    low, high = res.confidence_interval
    return (float(low), float(high)) if v.ndim == 1 else (np.asarray(low), np.asarray(high))


@dataclass(frozen=True)
class PairedComparison:
    """Explainer vs baseline over ``n`` paired items; differences are explainer − baseline."""

    n: int
    better_share: float  # share of items where the explainer is strictly better (direction-aware)
    tie_share: float  # share of items with equal scores
    mean_difference: float
    ci_low: float  # bootstrap CI of the mean difference
    ci_high: float
    p_value: float  # Wilcoxon signed-rank, two-sided; 1.0 when every difference is zero
    higher_is_better: bool

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def compare_paired(explainer, baseline, higher_is_better: bool, n_resamples: int = N_RESAMPLES,
                   level: float = LEVEL, seed: int = 0) -> PairedComparison:
    """Compare paired scores [N] (e.g. deletion AUCs: ``higher_is_better=False``); pairs with a NaN are dropped."""
    a, b = np.asarray(explainer, dtype=np.float64), np.asarray(baseline, dtype=np.float64)
    check(a.ndim == 1 and a.shape == b.shape, "scores", f"{a.shape} vs {b.shape}", "paired 1-d scores of equal length")
    keep = ~(np.isnan(a) | np.isnan(b))
    d = a[keep] - b[keep]
    n = len(d)
    if n == 0:
        nan = float("nan")
        return PairedComparison(0, nan, nan, nan, nan, nan, nan, higher_is_better)
    better = d > 0 if higher_is_better else d < 0
    low, high = bootstrap_ci(d, n_resamples, level, seed)
    p = float(stats.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
    return PairedComparison(n, float(better.mean()), float((d == 0).mean()), float(d.mean()), low, high, p,
                            higher_is_better)
