"""``explainer=gradient_shap``: Captum's GradientShap on z_t at a step (Lundberg & Lee, 2017).

The expected gradient × (z_t − baseline) over ``n_samples`` points drawn uniformly on the path between z_t
(plus Gaussian noise of std ``stdevs``) and a baseline drawn from the baseline distribution (the baseline, or
``n_samples`` noise draws). Samples are attributed in Captum calls of at most ``internal_batch_size`` samples (64 for
``auto``: the calls, and so Captum's draws from the seeded global RNGs, never depend on memory; the outcome evaluates
each call's batch in pieces that halve on out-of-memory, see :mod:`~diffexplain.explainers.captum_base`) and averaged.

Monte-Carlo reliability: the samples are drawn in two halves (the first ⌈n/2⌉ and the rest, each with its own half
of the noise baselines), whose channel-reduced maps are correlated (Spearman) and corrected to the full length
(Spearman–Brown): :attr:`GradientShapExplainer.last_stats` holds ``{"mc_reliability", "n_samples_used"}`` per
explained step — no extra model call (NaN with ``n_samples=1``).
"""

from __future__ import annotations

import torch
from captum.attr import GradientShap

from diffexplain.errors import check
from diffexplain.explainers.captum_base import CaptumExplainer, StepOutcome
from diffexplain.metrics.reliability import split_half_reliability


class GradientShapExplainer(CaptumExplainer):
    name = "gradient_shap"
    sampled = True  # its map is a Monte-Carlo estimate (another seed, another map): see last_stats

    def __init__(self, model, similarity, n_samples: int = 16, stdevs: float = 0.0, baseline: str = "noise",
                 **kwargs):
        super().__init__(model, similarity, baseline=baseline, **kwargs)
        check(isinstance(n_samples, int) and n_samples >= 1, "explainer.n_samples", n_samples, "an integer >= 1")
        check(stdevs >= 0, "explainer.stdevs", stdevs, "a number >= 0")
        self.n_samples, self.stdevs = n_samples, float(stdevs)
        self._halves: tuple[torch.Tensor, torch.Tensor] | None = None

    def attribute(self, forward: StepOutcome, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        shap, baselines = GradientShap(forward), self.baselines(z, generator, self.n_samples)
        half = (self.n_samples + 1) // 2
        sums = []
        for lo, hi in ((0, half), (half, self.n_samples)):
            pool = baselines[lo:hi] if len(baselines) == self.n_samples and hi > lo else baselines
            total = torch.zeros_like(z)
            for start in range(lo, hi, self.per_call):
                n = min(self.per_call, hi - start)
                total += n * shap.attribute(z, baselines=pool, n_samples=n, stdevs=self.stdevs)
            sums.append(total)
        rest = self.n_samples - half
        self._halves = (sums[0] / half, sums[1] / rest) if rest else None
        return (sums[0] + sums[1]) / self.n_samples

    def explain_step(self, trajectory, i: int) -> torch.Tensor:
        self._halves = None
        saliency = super().explain_step(trajectory, i)
        reliability = float("nan")
        if self._halves is not None:
            reliability = split_half_reliability(*(self.reduce(h[0]) for h in self._halves))
        self._halves = None
        self.last_stats[i] = {"mc_reliability": reliability, "n_samples_used": float(self.n_samples),
                              **self.last_stats[i]}  # then batch_size_used, as DF-RISE's
        return saliency
