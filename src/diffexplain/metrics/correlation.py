"""How alike are two maps? Spearman / Pearson correlations between maps, over steps, and with truth masks.

Spearman is Pearson on ranks (ties share their average rank, scipy.stats.rankdata); it only asks whether two maps
order the pixels alike, which is what a saliency map is read for. A constant map has no order: its correlations
are NaN, never 0 or 1.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from diffexplain.errors import check
from diffexplain.metrics.stats import LEVEL, N_RESAMPLES, bootstrap_ci

METHODS = ("spearman", "pearson")


def _rows(maps) -> np.ndarray:
    x = maps.detach().cpu().double().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps, np.float64)
    return x.reshape(len(x), -1)


def _correlate_rows(rows: np.ndarray, method: str) -> np.ndarray:
    """Correlation matrix [S, S] of the rows of [S, P]; rows without variation give NaN."""
    check(method in METHODS, "method", method, f"one of {list(METHODS)}")
    flat = np.ptp(rows, axis=1) == 0
    if method == "spearman":
        rows = stats.rankdata(rows, axis=1)
    c = rows - rows.mean(axis=1, keepdims=True)
    norm = np.sqrt((c ** 2).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.clip((c @ c.T) / np.outer(norm, norm), -1.0, 1.0)
    m[flat, :] = np.nan
    m[:, flat] = np.nan
    return m


def correlation(a, b, method: str = "spearman") -> float:
    """Correlation of two maps of the same shape, pixel by pixel (NaN if either is constant)."""
    check(tuple(a.shape) == tuple(b.shape), "maps", f"{tuple(a.shape)} vs {tuple(b.shape)}", "two maps of one shape")
    return float(_correlate_rows(np.concatenate([_rows(a[None]), _rows(b[None])]), method)[0, 1])


def spearman(a, b) -> float:
    """Spearman's rank correlation of two maps."""
    return correlation(a, b, "spearman")


def pearson(a, b) -> float:
    """Pearson's correlation of two maps."""
    return correlation(a, b, "pearson")


def mask_correlation(saliency, mask, method: str = "spearman") -> float:
    """Correlation of a map with a truth mask (1 inside): point-biserial for Pearson, rank-biserial-like for
    Spearman; > 0 when the map is higher inside the object."""
    return correlation(saliency, mask.float() if isinstance(mask, torch.Tensor) else np.asarray(mask, float), method)


def step_matrix(maps, method: str = "spearman") -> np.ndarray:
    """[S, S] correlations between one explainer's maps [S, h, w] at S steps of one item."""
    return _correlate_rows(_rows(maps), method)


@dataclass(frozen=True)
class MatrixSummary:
    """Mean of per-item matrices (NaNs ignored) with a bootstrap CI over items, each [S, S]."""

    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: int


def mean_matrix(matrices, n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = 0) -> MatrixSummary:
    """Average per-item matrices [N, S, S] (e.g. :func:`step_matrix` of each prompt) with a percentile-bootstrap
    CI over items (see :func:`~diffexplain.metrics.stats.bootstrap_ci`)."""
    m = np.asarray(matrices, dtype=np.float64)
    check(m.ndim == 3 and len(m) > 0, "matrices", m.shape, "a non-empty stack of matrices [N, S, S]")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # entries NaN in every item stay NaN
        mean = np.nanmean(m, axis=0)
    low, high = bootstrap_ci(m, n_resamples, level, seed)
    return MatrixSummary(mean, low, high, len(m))
