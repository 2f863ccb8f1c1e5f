"""The order in which a map ranks latent pixels, high first, with ties broken at random (seeded)."""

from __future__ import annotations

import torch

from diffexplain.errors import check


def pixel_order(saliency: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flat pixel indices [h·w] of ``saliency`` [h, w], most salient first; equal values in a random order drawn
    from ``generator`` (a CPU generator; None = seed 0), so a flat map gives a random order, not raster order."""
    s = saliency.detach().float().flatten().cpu()
    check(bool(torch.isfinite(s).all()), "saliency", "a map with NaN/inf", "finite values")
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    perm = torch.randperm(s.numel(), generator=generator)
    return perm[torch.sort(s[perm], descending=True, stable=True).indices]


def pixel_ranks(saliency: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Rank [h, w] of every pixel in :func:`pixel_order` (0 = most salient): ``ranks < k`` selects the top k."""
    order = pixel_order(saliency, generator)
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(order.numel())
    return ranks.view(saliency.shape)
