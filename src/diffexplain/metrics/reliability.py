"""How stable is a sampled map? Split-half Monte-Carlo reliability (Spearman–Brown).

A sampled map (DF-RISE's masks, GradientSHAP's baselines and path points) is an estimate from N random draws. Split
the draws into two disjoint halves, compute the map of each half (the running sums the full map needs anyway: no
extra model calls) and correlate them: r = Spearman(half A, half B). Each half has N/2 draws; the reliability of the
full N-draw map — the expected correlation between two independent N-draw maps of the same item — is the
Spearman–Brown prophecy 2r / (1 + r).

A deterministic map (DF-CAM, attention, Integrated Gradients with a fixed baseline, occlusion) has reliability 1 by
construction; the pipelines write ``mc_reliability`` rows only for sampled maps (see
:mod:`diffexplain.pipelines.explain`).
"""

from __future__ import annotations

import math

from diffexplain.metrics.correlation import spearman

MIN_RELIABILITY, MAX_MASKS = 0.9, 2048


def spearman_brown(r: float, factor: float = 2.0) -> float:
    """The reliability of a measurement ``factor`` times longer than one whose parallel halves correlate ``r``:
    factor·r / (1 + (factor − 1)·r). NaN stays NaN; negative split-half correlations give a negative reliability,
    floored at −1 (the prophecy diverges as r → −1/(factor − 1))."""
    if not math.isfinite(r):
        return float("nan")
    denominator = 1.0 + (factor - 1.0) * r
    if denominator <= 0:
        return -1.0
    return max(-1.0, min(1.0, factor * r / denominator))


def split_half_reliability(half_a, half_b) -> float:
    """Spearman–Brown corrected Spearman correlation of two half-maps (NaN when either half is constant)."""
    return spearman_brown(spearman(half_a, half_b))
