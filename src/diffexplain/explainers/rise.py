"""``explainer=rise``: DF-RISE — RISE on the latent of one denoising step (Park et al., 2024).

For N random masks M_k over the latent grid (shared by all channels): evaluate the guided UNet on z_t ⊙ M_k at
the same t, score the outcome against the unmasked outcome with a similarity S, and accumulate (``estimator``):

- ``rise``: Σ_k S_k · M_k / (N · p) — RISE, and the authors' code;
- ``centred``: Σ_k (S_k − S̄) · M_k / (N · p) — the same map without the term S̄ · Σ_k M_k / (N · p), which carries no
  evidence (it is S̄ plus the binomial noise of each pixel's mask count) and swamps the signal when the scores vary
  little around their mean;
- ``coverage``: Σ_k (S_k − â − b̂ · c_k) · M_k / (N · p), with c_k the share of the latent mask k keeps and (â, b̂)
  the least-squares line of the scores on it: also removes how much a score depends on *how much* is masked rather
  than *where*, which is the same for every pixel (and for any model), so only its sampling noise reaches the map.

Map scores (``score=map``) are handled per pixel. Masks are streamed in batches, so memory does not grow with N.

Monte-Carlo reliability: the even and the odd masks of every batch also fill two half-sums, whose maps are
correlated (Spearman) and corrected to the full map's length (Spearman–Brown, :mod:`diffexplain.metrics.reliability`)
— no extra UNet evaluation. ``n_masks=auto`` draws batches until that reliability reaches ``min_reliability`` or
``max_masks`` masks are used. Per explained step, :attr:`RISE.last_stats` holds ``{"mc_reliability",
"n_masks_used"}`` (read by the pipelines; the explainer itself writes nothing).

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

from diffexplain.config.options import AUTO_BATCH_START
from diffexplain.config.options import RISE_ESTIMATORS as ESTIMATORS
from diffexplain.config.options import RISE_MASKS as MASKS
from diffexplain.config.options import RISE_SCORES as SCORES
from diffexplain.errors import check
from diffexplain.explainers.base import Explainer, check_in
from diffexplain.metrics.reliability import MAX_MASKS, MIN_RELIABILITY, split_half_reliability
from diffexplain.models.batching import BatchSize
from diffexplain.models.outcomes import TARGETS, Outcome


class RISE(Explainer):
    name = "rise"
    sampled = True  # its map is a Monte-Carlo estimate (another seed, another map): see last_stats

    def __init__(self, model, similarity, masks: str = "pixel", n_masks: int | str = 256, p: float = 0.5,
                 grid_size: int = 4, batch_size: int | str = 64, target: str = "output", score: str = "scalar",
                 estimator: str = "centred", steps=None, seed: int = 0, min_reliability: float = MIN_RELIABILITY,
                 max_masks: int = MAX_MASKS):
        super().__init__(model, similarity, steps, seed)
        check_in("explainer.masks", masks, MASKS)
        check_in("explainer.target", target, TARGETS)
        check_in("explainer.score", score, SCORES)
        check(n_masks == "auto" or (isinstance(n_masks, int) and not isinstance(n_masks, bool) and n_masks >= 1),
              "explainer.n_masks", n_masks, "an integer >= 1 or auto (until explainer.min_reliability)")
        check(isinstance(min_reliability, (int, float)) and 0 < min_reliability < 1, "explainer.min_reliability",
              min_reliability, "a number in (0, 1)")
        check(isinstance(max_masks, int) and max_masks >= 2, "explainer.max_masks", max_masks, "an integer >= 2")
        check(0 < p < 1, "explainer.p", p, "a probability in (0, 1)")
        self.batch = BatchSize(batch_size, "explainer.batch_size")  # auto: halves on out-of-memory
        check(isinstance(grid_size, int) and grid_size >= 1, "explainer.grid_size", grid_size, "an integer >= 1")
        check(score == "scalar" or similarity.has_map, "explainer.score", score,
              f"'scalar' for similarity={similarity.name} (it has no map form)")
        self.masks, self.n_masks, self.p, self.grid_size = masks, n_masks, p, grid_size
        check_in("explainer.estimator", estimator, ESTIMATORS)
        self.batch_size, self.target, self.score, self.estimator = batch_size, target, score, estimator
        self.min_reliability, self.max_masks = float(min_reliability), max_masks
        self.last_stats: dict[int, dict[str, float]] = {}  # step → {"mc_reliability", "n_masks_used"}

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
        acc = _Sums((h, w), self.model.device)
        halves = (_Sums((h, w), self.model.device), _Sums((h, w), self.model.device))  # even / odd masks
        auto = self.n_masks == "auto"
        total = self.max_masks if auto else self.n_masks
        reliability = float("nan")
        draw = AUTO_BATCH_START if self.batch.auto else self.batch_size  # fixed: the masks never depend on memory
        for start in range(0, total, draw):
            masks = self.sample_masks(min(draw, total - start), h, w, g).to(self.model.device)
            scores = self.batched_scores(outcome, z, reference, masks)
            acc.add(scores, masks)
            self.report(len(masks) / total)  # progress (a no-op unless the caller listens)
            for k, half in enumerate(halves):
                if len(masks[k::2]):
                    half.add(scores[k::2], masks[k::2])
            if auto or acc.n == total:
                reliability = self.reliability(*halves)
                if auto and reliability >= self.min_reliability:
                    break
        self.last_stats[i] = {"mc_reliability": reliability, "n_masks_used": float(acc.n)}
        if self.batch.auto and self.batch.used is not None:  # what memory allowed (the map does not depend on it)
            self.last_stats[i]["batch_size_used"] = float(self.batch.used)
        return (acc.saliency(self.estimator) / (acc.n * self.p)).cpu()

    def batched_scores(self, outcome: Outcome, z: torch.Tensor, reference: torch.Tensor,
                       masks: torch.Tensor) -> torch.Tensor:
        """The scores of the masked latents z·M_k, evaluated in batches of ``explainer.batch_size`` (auto: halved on
        out-of-memory; the same scores whatever size ran)."""
        parts: list[torch.Tensor] = []  # in order: a range is appended only once it ran

        def run(start: int, stop: int) -> None:
            m = masks[start:stop]
            parts.append(self.scores(outcome(z * m.to(z.dtype)).float(), reference, m))

        self.batch.run(len(masks), run)
        return torch.cat(parts)

    def reliability(self, a: _Sums, b: _Sums) -> float:
        """Split-half reliability of the map from the two half-sums (NaN while a half is empty or flat)."""
        if a.n < 2 or b.n < 2:
            return float("nan")
        return split_half_reliability(a.saliency(self.estimator).cpu(), b.saliency(self.estimator).cpu())


class _Sums:
    """Running sums over masks k of S_k M_k, M_k, c_k M_k, S_k, c_k, c_k², S_k c_k (scores S_k scalar or per pixel,
    coverage c_k = mean of mask k): enough for every estimator without keeping the masks."""

    def __init__(self, shape, device):
        self.n = 0
        self.sm, self.m, self.cm, self.s, self.sc = (torch.zeros(shape, device=device) for _ in range(5))
        self.c = self.cc = 0.0

    def add(self, scores: torch.Tensor, masks: torch.Tensor) -> None:
        cover = masks.mean(dim=(1, 2, 3))  # [n]
        c = cover[:, None, None, None]
        self.n += len(masks)
        self.sm += (scores * masks).sum(dim=(0, 1))
        self.m += masks.sum(dim=(0, 1))
        self.cm += (c * masks).sum(dim=(0, 1))
        self.s += scores.sum(dim=(0, 1)).expand_as(self.s)
        self.sc += (scores * c).sum(dim=(0, 1)).expand_as(self.sc)
        self.c += float(cover.sum())
        self.cc += float((cover ** 2).sum())

    def saliency(self, estimator: str) -> torch.Tensor:
        if estimator == "rise":
            return self.sm
        mean_s = self.s / self.n
        if estimator == "centred":
            return self.sm - mean_s * self.m
        var_c = self.cc / self.n - (self.c / self.n) ** 2
        slope = (self.sc / self.n - mean_s * self.c / self.n) / var_c if var_c > 0 else torch.zeros_like(mean_s)
        intercept = mean_s - slope * self.c / self.n
        return self.sm - intercept * self.m - slope * self.cm
