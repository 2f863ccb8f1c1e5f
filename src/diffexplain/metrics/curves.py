"""Curves over timesteps: where a class becomes recognisable (the steep rise), when accuracy passes a level, and
bootstrap confidence intervals of mean curves. Timesteps are ascending (t = 0 is the clean end)."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.stats import bootstrap


def smooth(curves: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along the last axis, ``sigma`` in grid steps (edges: nearest value); 0 leaves it as is."""
    curves = np.asarray(curves, dtype=np.float64)
    return gaussian_filter1d(curves, sigma, axis=-1, mode="nearest") if sigma > 0 else curves


def rise_slope(timesteps, curves: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """−d(smoothed curve)/dt along the last axis: how fast the curve rises as t falls (as denoising proceeds)."""
    t = np.asarray(timesteps, dtype=np.float64)
    if len(t) < 2:
        return np.zeros_like(np.asarray(curves, dtype=np.float64))
    return -np.gradient(smooth(curves, sigma), t, axis=-1)


def steep_rise(timesteps, curves: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    """The timestep of the largest rise slope (:func:`rise_slope`) of each curve (last axis over ``timesteps``)."""
    t = np.asarray(timesteps)
    return t[np.argmax(rise_slope(t, curves, sigma), axis=-1)]


def sustained_above(timesteps, curve: np.ndarray, level: float = 0.5) -> float:
    """The largest timestep t such that ``curve > level`` at t and at every smaller timestep: coming from noise, the
    step from which the curve stays above ``level``. NaN if it is not above ``level`` even at the smallest t."""
    t, above = np.asarray(timesteps), np.asarray(curve) > level
    if not above[0]:
        return float("nan")
    last = len(t) - 1 if above.all() else int(np.argmin(above)) - 1
    return float(t[last])


def bootstrap_mean_ci(values: np.ndarray, confidence: float = 0.95, n_resamples: int = 1000, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI of the mean over the first axis of ``values`` [n, T] (NaN for n < 2)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        nan = np.full(values.shape[1:], np.nan)
        return nan, nan.copy()
    res = bootstrap((values,), np.mean, axis=0, confidence_level=confidence, n_resamples=n_resamples,
                    method="percentile", rng=np.random.default_rng(seed))
    return res.confidence_interval.low, res.confidence_interval.high


def steep_rise_ci(timesteps, values: np.ndarray, sigma: float = 2.0, confidence: float = 0.95,
                  n_resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the steep-rise step of the mean curve of ``values`` [n, T], resampling images
    (NaN for n < 2)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2:
        return float("nan"), float("nan")
    idx = np.random.default_rng(seed).integers(0, len(values), size=(n_resamples, len(values)))
    steps = steep_rise(timesteps, values[idx].mean(1), sigma)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(steps, [alpha, 1 - alpha])
    return float(lo), float(hi)
