"""SSIM and its luminance, contrast and structure terms, all on one Gaussian window.

With local (Gaussian-weighted) means μ, variances σ² and covariance σxy:
l = (2μxμy + C1) / (μx² + μy² + C1), c = (2σxσy + C2) / (σx² + σy² + C2),
s = (σxy + C3) / (σxσy + C3), C1 = (0.01 L)², C2 = (0.03 L)², C3 = C2 / 2, so SSIM = l · c · s.

Two variants (``similarity.variant``):

- ``textbook`` (default): the formulas above. Variances are clamped at 0; the window has ``kernel_size`` taps
  (default 2·int(3.5σ + 0.5) + 1: 11 for σ = 1.5) with reflect padding, so maps are H × W like the input.
  Full SSIM is torchmetrics', which sizes its Gaussian window from sigma alone, so ``ssim`` needs that
  ``kernel_size``; the terms compute their own moments and take any odd size.
  ``data_range`` L: a float, or None for each pair's joint range max(a, b) − min(a, b) over the item
  (all channels), which suits unbounded latents and keeps S(a, b) = S(b, a); a constant pair uses L = 1.
  Unlike torchmetrics' own None, this range is per item, not over the whole batch.
- ``authors``: the ``SSIM`` module of Park et al.'s DF-RISE code (X-Diffusion ``ssim.py``), to reproduce their
  figures: window of ``kernel_size`` taps (default 15, as they call it), zero padding (k − 1) // 2, L = 1 unless
  ``data_range`` is given (no per-item range), and the square roots of the *unclamped* variances.
  ``structure`` is their s = (2σxy + C3) / (σxσy + C3) — a factor 2 in the numerator, so s lies in (-2, 2) and
  s(x, x) = (2σ² + C3) / (σ² + C3) in [1, 2), near 2 where σ² ≫ C3.  ``contrast`` is what their
  ``mode="contrast"`` returns: the same structure term (their contrast line is never used, and it reads σxσx).
  ``ssim`` is their commented-out full formula (2μxμy + C1)(2σxy + C2) / ((μx² + μy² + C1)(σx² + σy² + C2)) on
  their window.  ``luminance`` does not exist there and is refused.
  NaN is replicated: where rounding makes a variance negative (flat regions, e.g. a constant 0.3 image), their
  ``sqrt`` gives NaN and it propagates into DF-RISE's sum.  On the embedded model's latents it does not occur
  (DF-RISE paper target, 12 prompts × 20 steps × 64 masks: no negative variance in float32 or float16).  The
  gradient is infinite where a variance is 0: the variant is for reproduction under ``torch.no_grad()``.

Bounds (textbook): SSIM, l and s lie in [-1, 1]; c in (0, 1]; l in [0, 1] for nonnegative inputs.
Map forms average over channels; scalar forms average the map over pixels.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

from diffexplain.config.options import AUTHORS_KERNEL_SIZE, SSIM_VARIANTS, ssim_window_size
from diffexplain.errors import check
from diffexplain.similarity.base import Similarity, pair

VARIANTS = SSIM_VARIANTS
window_size = ssim_window_size  # the Gaussian window size torchmetrics (and skimage) use for ``sigma``


def gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Normalised separable 2-D Gaussian [size, size] centred on the middle tap."""
    g = torch.exp(-(((torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2) / sigma) ** 2) / 2)
    g = g / g.sum()
    return g[:, None] * g[None, :]


class Moments(NamedTuple):
    """Window statistics per channel, each [B, C, H, W]; variances are not clamped."""

    mu_a: Tensor
    mu_b: Tensor
    var_a: Tensor
    var_b: Tensor
    cov: Tensor


class _Windowed(Similarity):
    """Shared parameters, the window moments and the constants of the SSIM family.

    Subclasses define a method per name in ``variants``, ``textbook(m, c1, c2)`` / ``authors(m, c1, c2)``:
    the per-channel map [B, C, H, W] from the moments ``m`` (SSIM's textbook form is torchmetrics' instead).
    """

    variants: tuple[str, ...] = VARIANTS

    def __init__(self, kernel_size: int | None = None, sigma: float = 1.5, data_range: float | None = None,
                 variant: str = "textbook"):
        super().__init__()
        check(variant in VARIANTS, "similarity.variant", variant, f"one of {list(VARIANTS)}")
        check(variant in self.variants, "similarity.variant", variant,
              f"'textbook' for similarity={self.name} (the authors' code has no {self.name} term)")
        check(sigma > 0, "similarity.sigma", sigma, "must be > 0")
        if kernel_size is None:
            kernel_size = AUTHORS_KERNEL_SIZE if variant == "authors" else window_size(sigma)
        check(isinstance(kernel_size, int) and kernel_size >= 1 and kernel_size % 2 == 1,
              "similarity.kernel_size", kernel_size, "an odd integer >= 1 (or null for the variant's default)")
        check(data_range is None or data_range > 0, "similarity.data_range", data_range, "must be null or > 0")
        self.kernel_size, self.sigma, self.data_range, self.variant = kernel_size, sigma, data_range, variant
        if variant != "textbook":  # result rows name the variant: "structure_authors"
            self.name = f"{type(self).name}_{variant}"

    def range_of(self, a: Tensor, b: Tensor) -> Tensor | float:
        """L: the configured float; else 1 (authors) or per item as [B, 1, 1, 1] (joint range of the pair)."""
        if self.data_range is not None:
            return self.data_range
        if self.variant == "authors":
            return 1.0
        joint = torch.cat((a, b), 1).flatten(1)
        r = joint.amax(1) - joint.amin(1)
        return torch.where(r > 0, r, torch.ones_like(r)).view(-1, 1, 1, 1)

    def _check_reflectable(self, a: Tensor) -> None:
        side = min(a.shape[-2:])
        check(self.kernel_size // 2 < side, "similarity.kernel_size", self.kernel_size,
              f"at most {2 * side - 1} for {tuple(a.shape[-2:])} inputs with variant=textbook (reflect padding)")

    def moments(self, a: Tensor, b: Tensor) -> Moments:
        """Gaussian-window means, variances and covariance; reflect (textbook) or zero (authors) padding."""
        k, channels = self.kernel_size, a.shape[1]
        p = (k - 1) // 2
        kernel = gaussian_window(k, self.sigma, a.dtype, a.device).expand(channels, 1, k, k)
        x = torch.cat((a, b, a * a, b * b, a * b))
        if self.variant == "textbook":
            self._check_reflectable(a)
            x = F.pad(x, (p, p, p, p), mode="reflect")
        else:
            x = F.pad(x, (p, p, p, p))
        mu_a, mu_b, e_aa, e_bb, e_ab = F.conv2d(x, kernel, groups=channels).split(a.shape[0])
        return Moments(mu_a, mu_b, e_aa - mu_a**2, e_bb - mu_b**2, e_ab - mu_a * mu_b)

    def map(self, a: Tensor, b: Tensor) -> Tensor:
        a, b = pair(a, b)
        c2 = (0.03 * self.range_of(a, b)) ** 2
        term = getattr(self, self.variant)
        return term(self.moments(a, b), c2 / 9, c2).mean(1)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.map(a, b).mean(dim=(1, 2))


def _textbook_sd(m: Moments) -> tuple[Tensor, Tensor, Tensor]:
    """Clamped variances and σaσb, with sqrt kept off 0 (its slope is infinite there)."""
    var_a, var_b = m.var_a.clamp(min=0), m.var_b.clamp(min=0)
    tiny = torch.finfo(var_a.dtype).tiny
    return var_a, var_b, var_a.clamp(min=tiny).sqrt() * var_b.clamp(min=tiny).sqrt()


def _authors_structure(m: Moments, c2: Tensor | float) -> Tensor:
    """X-Diffusion's structure term: (2σab + C3) / (√σa² · √σb² + C3), unclamped."""
    return (2 * m.cov + c2 / 2) / (m.var_a.sqrt() * m.var_b.sqrt() + c2 / 2)


class SSIM(_Windowed):
    """Full SSIM. Textbook: torchmetrics (each pair scaled by 1/L, then data_range=1: SSIM is scale-invariant),
    which derives its window from sigma, so ``kernel_size`` must be 2·int(3.5σ + 0.5) + 1."""

    name = "ssim"

    def __init__(self, kernel_size: int | None = None, sigma: float = 1.5, data_range: float | None = None,
                 variant: str = "textbook"):
        super().__init__(kernel_size, sigma, data_range, variant)
        size = window_size(sigma)
        check(variant != "textbook" or self.kernel_size == size, "similarity.kernel_size", self.kernel_size,
              f"{size} for similarity=ssim with sigma={sigma} and variant=textbook (torchmetrics derives the window "
              "from sigma: 2*int(3.5*sigma+0.5)+1); other sizes work with structure/contrast/luminance "
              "or variant=authors")

    def _torchmetrics(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        a, b = pair(a, b)
        self._check_reflectable(a)
        scale = self.range_of(a, b)
        return structural_similarity_index_measure(
            a / scale, b / scale, sigma=self.sigma, kernel_size=self.kernel_size,
            data_range=1.0, reduction="none", return_full_image=True,
        )  # type: ignore[return-value]

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self._torchmetrics(a, b)[0] if self.variant == "textbook" else super().forward(a, b)

    def map(self, a: Tensor, b: Tensor) -> Tensor:
        return self._torchmetrics(a, b)[1].mean(1) if self.variant == "textbook" else super().map(a, b)

    def authors(self, m: Moments, c1, c2) -> Tensor:
        """The authors' commented-out full SSIM on their window (no square roots, so no NaN)."""
        return (((2 * m.mu_a * m.mu_b + c1) * (2 * m.cov + c2))
                / ((m.mu_a**2 + m.mu_b**2 + c1) * (m.var_a + m.var_b + c2)))


class Luminance(_Windowed):
    """l = (2μxμy + C1) / (μx² + μy² + C1), C1 = (0.01 L)² = C2 / 9.  Textbook only."""

    name = "luminance"
    variants = ("textbook",)

    def textbook(self, m: Moments, c1, c2) -> Tensor:
        return (2 * m.mu_a * m.mu_b + c1) / (m.mu_a**2 + m.mu_b**2 + c1)


class Contrast(_Windowed):
    """c = (2σxσy + C2) / (σx² + σy² + C2); variant=authors: their ``mode="contrast"``, i.e. the structure term."""

    name = "contrast"

    def textbook(self, m: Moments, c1, c2) -> Tensor:
        var_a, var_b, sd_ab = _textbook_sd(m)
        return (2 * sd_ab + c2) / (var_a + var_b + c2)

    def authors(self, m: Moments, c1, c2) -> Tensor:
        return _authors_structure(m, c2)


class Structure(_Windowed):
    """s = (σxy + C3) / (σxσy + C3), C3 = C2 / 2; variant=authors: (2σxy + C3) / (σxσy + C3), unclamped."""

    name = "structure"

    def textbook(self, m: Moments, c1, c2) -> Tensor:
        return (m.cov + c2 / 2) / (_textbook_sd(m)[2] + c2 / 2)

    def authors(self, m: Moments, c1, c2) -> Tensor:
        return _authors_structure(m, c2)
