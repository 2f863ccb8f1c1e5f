"""``explainer=rise``: DF-RISE — RISE on the latent of one denoising step (Park et al., 2024).

For N random masks M_k over the latent grid (shared by all channels): evaluate the guided UNet on z_t ⊙ M_k at
the same t, score the outcome against the unmasked outcome with a similarity S, and accumulate
saliency = Σ_k S_k · M_k / (N · p) (RISE, and the authors' code), or with ``center=true``
Σ_k (S_k − S̄) · M_k / (N · p): the same map up to the term S̄ · Σ_k M_k / (N · p), which carries no evidence (it is
S̄ plus the binomial noise of the mask counts) and swamps the signal when the scores vary little around their mean.
Masks are streamed in batches, so memory does not grow with N.

Targets (what "outcome" means):
- ``paper``: the masked noise prediction vs the unmasked next latent z_{t−1} — the authors' code; it compares
  unlike quantities and is kept to reproduce their figures.
- ``next_latent`` (default): the scheduler step of the masked evaluation vs the unmasked z_{t−1}.
- ``x0``: the decoded x0-prediction of the masked evaluation vs the unmasked one.
- ``final``: the masked z_t rolled out through every remaining step and decoded, vs the final image (costly).
Scores are scalars (``score=scalar``, classic RISE) or per-pixel maps (``score=map``, the authors' SSIM
structure map), pooled to the latent grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from diffexplain.errors import check
from diffexplain.explainers.base import Explainer, check_in
from diffexplain.models.outcomes import TARGETS, Outcome
MASKS = ("pixel", "grid")
SCORES = ("scalar", "map")


class RISE(Explainer):
    name = "rise"

    def __init__(self, model, similarity, masks: str = "pixel", n_masks: int = 256, p: float = 0.5,
                 grid_size: int = 4, batch_size: int = 64, target: str = "next_latent", score: str = "scalar",
                 center: bool = False, steps=None, seed: int = 0):
        super().__init__(model, similarity, steps, seed)
        check_in("explainer.masks", masks, MASKS)
        check_in("explainer.target", target, TARGETS)
        check_in("explainer.score", score, SCORES)
        check(isinstance(n_masks, int) and n_masks >= 1, "explainer.n_masks", n_masks, "an integer >= 1")
        check(0 < p < 1, "explainer.p", p, "a probability in (0, 1)")
        check(isinstance(batch_size, int) and batch_size >= 1, "explainer.batch_size", batch_size, "an integer >= 1")
        check(isinstance(grid_size, int) and grid_size >= 1, "explainer.grid_size", grid_size, "an integer >= 1")
        check(score == "scalar" or similarity.has_map, "explainer.score", score,
              f"'scalar' for similarity={similarity.name} (it has no map form)")
        self.masks, self.n_masks, self.p, self.grid_size = masks, n_masks, p, grid_size
        check(isinstance(center, bool), "explainer.center", center, "true or false")
        self.batch_size, self.target, self.score, self.center = batch_size, target, score, center

    # -- masks ------------------------------------------------------------------------------------
    def sample_masks(self, n: int, h: int, w: int, generator: torch.Generator) -> torch.Tensor:
        """[n, 1, h, w] masks in [0, 1] on the CPU: Bernoulli per pixel, or RISE's shifted upsampled grids."""
        if self.masks == "pixel":
            return (torch.rand((n, 1, h, w), generator=generator) < self.p).float()
        s = self.grid_size
        ch, cw = math.ceil(h / s), math.ceil(w / s)
        grid = (torch.rand((n, 1, s, s), generator=generator) < self.p).float()
        up = F.interpolate(grid, size=((s + 1) * ch, (s + 1) * cw), mode="bilinear", align_corners=False)
        dx = torch.randint(0, ch, (n,), generator=generator)
        dy = torch.randint(0, cw, (n,), generator=generator)
        return torch.stack([up[k, :, dx[k]: dx[k] + h, dy[k]: dy[k] + w] for k in range(n)])

    def scores(self, outcome, reference, masks: torch.Tensor) -> torch.Tensor:
        """S_k of one batch, [n, 1, 1, 1] (scalar) or [n, 1, h, w] (a map pooled to the mask grid)."""
        if self.score == "scalar":
            return self.similarity(outcome, reference).float()[:, None, None, None]
        scores = self.similarity.map(outcome, reference).float()[:, None]
        if scores.shape[-2:] != masks.shape[-2:]:
            scores = F.adaptive_avg_pool2d(scores, masks.shape[-2:])
        return scores

    def outcome(self, trajectory, i: int) -> Outcome:
        """What a masked z_t is scored by (see :mod:`diffexplain.models.outcomes`)."""
        return Outcome(self.model, trajectory, i, self.target, image_domain=self.similarity.domain == "image")

    @torch.no_grad()
    def explain_step(self, trajectory, i: int) -> torch.Tensor:
        self.similarity.to(self.model.device)
        g = self.generator(trajectory, i)
        _, h, w = trajectory.latents.shape[1:]
        outcome = self.outcome(trajectory, i)
        z = trajectory.latents[i: i + 1].to(self.model.device, torch.float32)
        reference = outcome.reference().float()
        weighted, mask_sum, score_sum = (torch.zeros((h, w), device=self.model.device) for _ in range(3))
        for start in range(0, self.n_masks, self.batch_size):
            masks = self.sample_masks(min(self.batch_size, self.n_masks - start), h, w, g).to(self.model.device)
            scores = self.scores(outcome(z * masks.to(z.dtype)).float(), reference, masks)
            weighted += (scores * masks).sum(dim=(0, 1))
            if self.center:
                mask_sum += masks.sum(dim=(0, 1))
                score_sum += scores.sum(dim=(0, 1))
        if self.center:  # Σ (S_k − S̄) M_k: the mean score times the mask count is noise, not evidence
            weighted -= score_sum / self.n_masks * mask_sum
        return (weighted / (self.n_masks * self.p)).cpu()
