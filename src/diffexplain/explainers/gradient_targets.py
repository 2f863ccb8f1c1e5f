"""The scalar a gradient explainer differentiates at a step (DF-CAM, attention relevance): ``explainer.target``.

- ``noise_sum``: the guided model output summed (the authors' DF-CAM target);
- ``similarity``: the similarity (``similarity=...``) of the step's x0-prediction to the trajectory's final latent,
  decoded first for image similarities.
"""

from __future__ import annotations

import torch

from diffexplain.config.options import GRADIENT_TARGETS as TARGETS
from diffexplain.errors import check
from diffexplain.explainers.base import check_in


def check_target(target: str, similarity) -> None:
    check_in("explainer.target", target, TARGETS)
    check(target != "similarity" or similarity is not None, "explainer.target", target,
          "'noise_sum' unless a similarity is configured")


def step_target(model, similarity, target: str, out: torch.Tensor, z: torch.Tensor, trajectory, i: int):
    """The scalar a gradient explainer differentiates at step ``i``, from the guided model output ``out`` at ``z``:
    ``noise_sum`` = Σ out; ``similarity`` = similarity of the x0-prediction to the final latent (decoded first
    for image similarities)."""
    if target == "noise_sum":
        return out.sum()
    x0 = model.eps_and_x0(out, z, trajectory.timesteps[i])[1]
    final = trajectory.latents[-1:].to(x0.device)
    if similarity.domain == "image":
        x0, final = model.decode_with_grad(x0), model.decode(final)
    return similarity.to(x0.device)(x0, final).sum()
