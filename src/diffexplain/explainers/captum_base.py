"""Shared machinery of the Captum explainers: the scalar step outcome, baselines, seeding, batching and the channel
reduction.

Captum attributes a function of the latent z_t at step i. :class:`StepOutcome` is that function: one batched
guided UNet evaluation of z at the step's timestep, turned into an outcome and scored against the unperturbed
outcome with a similarity, one scalar per batch item. Targets:

- ``output``: the guided model output itself vs the unperturbed one (the network alone, without the scheduler's
  direct path from z_t).
- ``next_latent`` (default): the scheduler step of the evaluation vs the unperturbed z_{t−1} (``latents[i + 1]``).
- ``x0``: the decoded x0-prediction of the evaluation vs the decoded unperturbed x0-prediction.

Image-domain similarities (FID) compare decoded images for either target.

``internal_batch_size`` (an integer or ``auto``, :class:`~diffexplain.models.batching.BatchSize`): Captum hands the
outcome the same batches whatever memory allows — that many latents, or
:data:`~diffexplain.config.options.AUTO_BATCH_START` for ``auto`` — and the outcome evaluates each batch (with its
gradient, where Captum asks for one) in pieces of the batch size, halved on out-of-memory. Each score depends on its
own latent only, so the pieces change no number Captum sees: a map does not depend on the size that ran (bitwise
where the model's kernels give each latent the same result in any batch, as the tiny model's do on the CPU down to
8 latents).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from diffexplain.config.options import AUTO_BATCH_START, CHANNEL_REDUCES
from diffexplain.config.options import CAPTUM_BASELINES as BASELINES
from diffexplain.config.options import CAPTUM_TARGETS as TARGETS
from diffexplain.explainers.base import Explainer, check_in
from diffexplain.metrics.substrates import blur
from diffexplain.models import DiffusionModel, Trajectory
from diffexplain.models.batching import BatchSize
from diffexplain.models.outcomes import Outcome
from diffexplain.similarity import Similarity


class StepOutcome(nn.Module):
    """``forward(z[B, C, h, w]) -> [B]``: similarity of the guided step outcome of each z to the unperturbed one;
    with ``batch``, evaluated in its pieces (:meth:`pieces`)."""

    def __init__(self, model: DiffusionModel, trajectory: Trajectory, i: int, similarity: Similarity,
                 target: str = "output", batch: BatchSize | None = None):
        super().__init__()
        check_in("explainer.target", target, TARGETS)
        self.model, self.trajectory, self.i, self.target, self.batch = model, trajectory, i, target, batch
        self.similarity = similarity.to(model.device)
        self.outcome = Outcome(model, trajectory, i, target, image_domain=similarity.domain == "image")
        self.reference = self.outcome.reference().float()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.batch is None:
            return self.score(z)
        if torch.is_grad_enabled() and z.requires_grad:
            return _PieceGradients.apply(z, self)
        return self.pieces(z)[0]

    def score(self, z: torch.Tensor) -> torch.Tensor:
        return self.similarity(self.outcome(z).float(), self.reference)

    def pieces(self, z: torch.Tensor, gradients: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The scores [B] of ``z`` (and their gradients [B, C, h, w] w.r.t. ``z``) evaluated in ranges of ``batch``
        (auto: halved on out-of-memory, the range retried)."""
        scores, grads = [], []  # in order: a range is appended only once it ran

        def run(start: int, stop: int) -> None:
            if not gradients:
                scores.append(self.score(z[start:stop]))
                return
            x = z[start:stop].detach().requires_grad_()
            with torch.enable_grad():
                s = self.score(x)
                (g,) = torch.autograd.grad(torch.unbind(s), x)  # as Captum's compute_gradients
            scores.append(s.detach())
            grads.append(g)

        self.batch.run(len(z), run)
        return torch.cat(scores), torch.cat(grads) if gradients else None


class _PieceGradients(torch.autograd.Function):
    """The scores of ``z`` with their gradients computed in the forward, piece by piece; the backward scales those
    gradients (exact: score k depends on z_k only, and Captum back-propagates ones)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, f: StepOutcome) -> torch.Tensor:
        scores, ctx.grads = f.pieces(z, gradients=True)
        return scores

    @staticmethod
    def backward(ctx, grad_scores: torch.Tensor):
        return grad_scores.view(-1, *[1] * (ctx.grads.dim() - 1)) * ctx.grads, None


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
    ``internal_batch_size`` bounds the latents per batched UNet evaluation (``auto``: halved on out-of-memory, see
    the module). Per explained step, :attr:`last_stats` holds ``{"batch_size_used"}`` with ``auto`` (else ``{}``).
    """

    def __init__(self, model, similarity, target: str = "output", baseline: str = "zeros",
                 channel_reduce: str = "sum", internal_batch_size: int | str = 16, steps=None, seed: int = 0):
        super().__init__(model, similarity, steps, seed)
        check_in("explainer.target", target, TARGETS)
        check_in("explainer.baseline", baseline, BASELINES)
        check_in("explainer.channel_reduce", channel_reduce, CHANNEL_REDUCES)
        self.batch = BatchSize(internal_batch_size, "explainer.internal_batch_size")
        self.target, self.baseline, self.channel_reduce = target, baseline, channel_reduce
        self.internal_batch_size = internal_batch_size
        #: The latents Captum hands the outcome at once: fixed, so the map never depends on what memory allowed.
        self.per_call = AUTO_BATCH_START if self.batch.auto else internal_batch_size
        self.last_stats: dict[int, dict[str, float]] = {}

    def outcome(self, trajectory: Trajectory, i: int) -> StepOutcome:
        """The scalar function of z_t that is attributed, evaluated in pieces of ``internal_batch_size``."""
        return StepOutcome(self.model, trajectory, i, self.similarity, self.target, self.batch)

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
        saliency = self.reduce(self.attributions(trajectory, i)[0])
        used = self.batch.used if self.batch.auto else None  # what memory allowed (the map does not depend on it)
        self.last_stats[i] = {} if used is None else {"batch_size_used": float(used)}
        return saliency

    def reduce(self, a: torch.Tensor) -> torch.Tensor:
        """Attributions [C, h, w] reduced over channels to a map [h, w] on the CPU."""
        a = a.float()
        return (a.abs() if self.channel_reduce == "abs_sum" else a).sum(0).cpu()
