"""``explainer=integrated_gradients``: Captum's Integrated Gradients on z_t at a step (Sundararajan et al., 2017).

Attributions integrate the gradient of the step outcome's similarity along the straight path from the baseline to
z_t; they sum to f(z_t) − f(baseline) up to the integral's approximation error (completeness).
"""

from __future__ import annotations

import torch
from captum.attr import IntegratedGradients

from diffexplain.config.options import IG_METHODS as METHODS
from diffexplain.errors import check
from diffexplain.explainers.base import check_in
from diffexplain.explainers.captum_base import CaptumExplainer, StepOutcome


class IntegratedGradientsExplainer(CaptumExplainer):
    name = "integrated_gradients"

    def __init__(self, model, similarity, n_steps: int = 32, method: str = "gausslegendre", **kwargs):
        super().__init__(model, similarity, **kwargs)
        check(isinstance(n_steps, int) and n_steps >= 1, "explainer.n_steps", n_steps, "an integer >= 1")
        check_in("explainer.method", method, METHODS)
        self.n_steps, self.method = n_steps, method

    def attribute(self, forward: StepOutcome, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return IntegratedGradients(forward).attribute(
            z, baselines=self.baselines(z, generator), n_steps=self.n_steps, method=self.method,
            internal_batch_size=self.per_call)
