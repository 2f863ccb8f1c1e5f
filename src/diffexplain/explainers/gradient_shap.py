"""``explainer=gradient_shap``: GradientShap on z_t at a step (Lundberg & Lee, 2017), Captum's estimator.

The expected gradient × (z_t − baseline) over ``n_samples`` points drawn uniformly on the path between z_t
(plus Gaussian noise of std ``stdevs``) and a baseline drawn from the baseline distribution (the baseline, or
``n_samples`` noise draws, one per sample). Captum's ``GradientShap`` draws these inside every call from the global
RNGs; here they are drawn once, up front, from the explainer's seeded generator, and the gradients at all points are
evaluated in pieces of ``internal_batch_size`` (``auto``: halved on out-of-memory) and averaged in one reduction, so
the map does not depend on the size that ran.

Monte-Carlo reliability: the samples fall in two halves (the first ⌈n/2⌉ and the rest, each with its own half
of the noise baselines), whose channel-reduced maps are correlated (Spearman) and corrected to the full length
(Spearman–Brown): :attr:`GradientShapExplainer.last_stats` holds ``{"mc_reliability", "n_samples_used"}`` per
explained step — no extra model call (NaN with ``n_samples=1``).
"""

from __future__ import annotations

import torch

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
        n, shape = self.n_samples, (self.n_samples, *z.shape[1:])
        baselines = self.baselines(z, generator, n)  # [1 or n, C, h, w]
        noised = z + self.stdevs * torch.randn(shape, generator=generator).to(z.device, z.dtype)
        alphas = torch.rand(n, generator=generator).to(z.device, z.dtype).view(n, 1, 1, 1)
        steps = noised - baselines
        _, grads = forward.pieces(baselines + alphas * steps, gradients=True)
        samples = grads * steps  # [n, C, h, w], the same whatever pieces ran
        half = (n + 1) // 2
        sums = samples[:half].sum(0, keepdim=True), samples[half:].sum(0, keepdim=True)
        self._halves = (sums[0] / half, sums[1] / (n - half)) if n > half else None
        return (sums[0] + sums[1]) / n

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
