"""What perturbed latent pixels are replaced with: the deletion game's substrates and the insertion game's start.

``blur`` is the insertion game's blurred latent (Petsiuk et al., 2018: Gaussian, 11 taps, σ 5); the Captum
explainers' ``baseline=blur`` is the same function.

``renoise`` keeps the deletion in distribution: a deleted pixel takes fresh noise at the step's noise level, as if
the model had not decided it yet — the latent's noise part with the clean signal removed (√(1−ᾱ_t)·ε for
DDPM-style schedules, σ_t·ε in sigma space and for flow matching). The model supplies that pure-noise latent
(:meth:`diffexplain.models.DiffusionModel.noise_latent`, seeded per item and step, so every map of an item meets
the same noise); the insertion game then starts from the fully re-noised latent instead of the blur.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diffexplain.config.options import SUBSTRATES
from diffexplain.errors import check

BLUR_KERNEL, BLUR_SIGMA = 11, 5.0


def blur(z: torch.Tensor) -> torch.Tensor:
    """Gaussian blur (σ 5, 11 taps, reflect padding) of each channel of [N, C, h, w]; the kernel is cut to the
    grid where it is smaller than 6 pixels (reflect padding must be narrower than the grid)."""
    k = min(BLUR_KERNEL, 2 * min(z.shape[-2:]) - 1)
    x = torch.arange(k, dtype=torch.float32, device=z.device) - (k - 1) / 2
    g = torch.exp(-(x / BLUR_SIGMA) ** 2 / 2)
    g = (g / g.sum()).to(z.dtype)
    p = (k - 1) // 2
    c = z.shape[1]
    padded = F.pad(z, (p, p, p, p), mode="reflect")
    rows = F.conv2d(padded, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(rows, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def substrate(z: torch.Tensor, kind: str = "zeros", key: str = "substrate",
              noise: torch.Tensor | None = None) -> torch.Tensor:
    """The latent deleted pixels take, like ``z`` [N, C, h, w]: ``zeros``, ``blur`` (z blurred), ``mean``
    (each channel's spatial mean) or ``renoise`` (``noise``: the pure-noise latent at the step, [C, h, w] or like
    ``z``)."""
    check(kind in SUBSTRATES, key, kind, f"one of {list(SUBSTRATES)}")
    if kind == "renoise":
        check(noise is not None, key, kind, "a pure-noise latent (noise=) for the renoise substrate")
        return noise.to(z.device, z.dtype).expand_as(z).clone()
    if kind == "zeros":
        return torch.zeros_like(z)
    if kind == "blur":
        return blur(z)
    return z.mean(dim=(-2, -1), keepdim=True).expand_as(z).clone()
