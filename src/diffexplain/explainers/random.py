"""``explainer=random``: i.i.d. uniform maps — the baseline every evaluation compares against."""

from __future__ import annotations

import torch

from diffexplain.explainers.base import Explainer


class RandomExplainer(Explainer):
    name = "random"
    uses_similarity = classmethod(lambda cls, config: False)  # see Explainer

    def explain_step(self, trajectory, i: int) -> torch.Tensor:
        _, h, w = trajectory.latents.shape[1:]
        return torch.rand((h, w), generator=self.generator(trajectory, i))
