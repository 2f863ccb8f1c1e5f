"""``explainer=gradient_shap``: Captum's GradientShap on z_t at a step (Lundberg & Lee, 2017).

The expected gradient × (z_t − baseline) over ``n_samples`` points drawn uniformly on the path between z_t
(plus Gaussian noise of std ``stdevs``) and a baseline drawn from the baseline distribution (the baseline, or
``n_samples`` noise draws). Samples are attributed in chunks of at most ``internal_batch_size`` and averaged.
"""

from __future__ import annotations

import torch
from captum.attr import GradientShap

from diffexplain.errors import check
from diffexplain.explainers.captum_base import CaptumExplainer, StepOutcome


class GradientShapExplainer(CaptumExplainer):
    name = "gradient_shap"

    def __init__(self, model, similarity, n_samples: int = 16, stdevs: float = 0.0, baseline: str = "noise",
                 **kwargs):
        super().__init__(model, similarity, baseline=baseline, **kwargs)
        check(isinstance(n_samples, int) and n_samples >= 1, "explainer.n_samples", n_samples, "an integer >= 1")
        check(stdevs >= 0, "explainer.stdevs", stdevs, "a number >= 0")
        self.n_samples, self.stdevs = n_samples, float(stdevs)

    def attribute(self, forward: StepOutcome, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        shap, baselines = GradientShap(forward), self.baselines(z, generator, self.n_samples)
        total = torch.zeros_like(z)
        for start in range(0, self.n_samples, self.internal_batch_size):
            n = min(self.internal_batch_size, self.n_samples - start)
            total += n * shap.attribute(z, baselines=baselines, n_samples=n, stdevs=self.stdevs)
        return total / self.n_samples
