"""Shared machinery of the Captum explainers: the scalar step outcome, baselines, seeding and the channel reduction.

Captum attributes a function of the latent z_t at step i. :class:`StepOutcome` is that function: one batched
guided UNet evaluation of z at the step's timestep, turned into an outcome and scored against the unperturbed
outcome with a similarity, one scalar per batch item. Targets:

- ``output``: the guided model output itself vs the unperturbed one (the network alone, without the scheduler's
  direct path from z_t).
- ``next_latent`` (default): the scheduler step of the evaluation vs the unperturbed z_{t−1} (``latents[i + 1]``).
- ``x0``: the decoded x0-prediction of the evaluation vs the decoded unperturbed x0-prediction.

Image-domain similarities (FID) compare decoded images for either target.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from diffexplain.config.options import CAPTUM_BASELINES as BASELINES
from diffexplain.config.options import CAPTUM_TARGETS as TARGETS
from diffexplain.config.options import CHANNEL_REDUCES
from diffexplain.errors import check
from diffexplain.explainers.base import Explainer, check_in
from diffexplain.metrics.substrates import blur
from diffexplain.models import DiffusionModel, Trajectory
from diffexplain.models.outcomes import Outcome
from diffexplain.similarity import Similarity


class StepOutcome(nn.Module):
    """``forward(z[B, C, h, w]) -> [B]``: similarity of the guided step outcome of each z to the unperturbed one."""

    def __init__(self, model: DiffusionModel, trajectory: Trajectory, i: int, similarity: Similarity,
                 target: str = "output"):
        super().__init__()
        check_in("explainer.target", target, TARGETS)
        self.model, self.trajectory, self.i, self.target = model, trajectory, i, target
        self.similarity = similarity.to(model.device)
        self.outcome = Outcome(model, trajectory, i, target, image_domain=similarity.domain == "image")
        self.reference = self.outcome.reference().float()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.similarity(self.outcome(z).float(), self.reference)


@contextmanager
def seeded_global_rngs(generator: torch.Generator, device: torch.device) -> Iterator[None]:
    """Seed torch's and NumPy's global RNGs (Captum samples from both) from ``generator``, restoring them after."""
    seed = int(torch.randint(2**31, (), generator=generator))
    state = np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


class CaptumExplainer(Explainer):
    """A Captum attribution method on z_t at a step, reduced over channels to a map [h, w].

    Subclasses implement :meth:`attribute` (one Captum call on a :class:`StepOutcome`). ``baseline`` is the
    reference latent perturbations move towards: ``zeros``, ``blur`` (z_t blurred) or ``noise`` (N(0, I), seeded).
    ``internal_batch_size`` bounds the latents per batched UNet evaluation.
    """

    def __init__(self, model, similarity, target: str = "output", baseline: str = "zeros",
                 channel_reduce: str = "sum", internal_batch_size: int = 16, steps=None, seed: int = 0):
        super().__init__(model, similarity, steps, seed)
        check_in("explainer.target", target, TARGETS)
        check_in("explainer.baseline", baseline, BASELINES)
        check_in("explainer.channel_reduce", channel_reduce, CHANNEL_REDUCES)
        check(isinstance(internal_batch_size, int) and internal_batch_size >= 1, "explainer.internal_batch_size",
              internal_batch_size, "an integer >= 1")
        self.target, self.baseline, self.channel_reduce = target, baseline, channel_reduce
        self.internal_batch_size = internal_batch_size

    def outcome(self, trajectory: Trajectory, i: int) -> StepOutcome:
        """The scalar function of z_t that is attributed."""
        return StepOutcome(self.model, trajectory, i, self.similarity, self.target)

    def baselines(self, z: torch.Tensor, generator: torch.Generator, n: int = 1) -> torch.Tensor:
        """Baseline latents for ``z`` [1, C, h, w]: [1, C, h, w], or n noise draws [n, C, h, w]."""
        if self.baseline == "zeros":
            return torch.zeros_like(z)
        if self.baseline == "blur":
            return blur(z)
        return torch.randn((n, *z.shape[1:]), generator=generator).to(z.device, z.dtype)

    def attribute(self, forward: StepOutcome, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Captum attributions [1, C, h, w] of ``forward`` at ``z``."""
        raise NotImplementedError

    def attributions(self, trajectory: Trajectory, i: int) -> torch.Tensor:
        """Unreduced attributions [1, C, h, w] at step ``i``, deterministic for (seed, trajectory, step)."""
        g = self.generator(trajectory, i)
        z = trajectory.latents[i: i + 1].to(self.model.device)
        with seeded_global_rngs(g, self.model.device):
            return self.attribute(self.outcome(trajectory, i), z, g).detach()

    def explain_step(self, trajectory: Trajectory, i: int) -> torch.Tensor:
        a = self.attributions(trajectory, i)[0].float()
        return (a.abs() if self.channel_reduce == "abs_sum" else a).sum(0).cpu()
