"""``explainer=occlusion``: Captum's Occlusion on z_t at a step (Zeiler & Fergus, 2014).

A ``window`` × ``window`` patch of the latent (all channels at once) slides with ``stride``; each pixel gets the
mean drop f(z_t) − f(z_t with the patch set to the baseline) over the patches that cover it.
"""

from __future__ import annotations

import torch
from captum.attr import Occlusion

from diffexplain.errors import check
from diffexplain.explainers.captum_base import CaptumExplainer, StepOutcome


class OcclusionExplainer(CaptumExplainer):
    name = "occlusion"

    def __init__(self, model, similarity, window: int = 2, stride: int = 1, **kwargs):
        super().__init__(model, similarity, **kwargs)
        side = min(model.latent_shape[1:])
        check(isinstance(window, int) and 1 <= window <= side, "explainer.window", window,
              f"an integer in [1, {side}] (latent pixels)")
        check(isinstance(stride, int) and stride >= 1, "explainer.stride", stride, "an integer >= 1")
        self.window, self.stride = window, stride

    def attribute(self, forward: StepOutcome, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        c = z.shape[1]
        return Occlusion(forward).attribute(
            z, sliding_window_shapes=(c, self.window, self.window), strides=(c, self.stride, self.stride),
            baselines=self.baselines(z, generator), perturbations_per_eval=self.per_call)
