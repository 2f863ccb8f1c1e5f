"""Localisation against ground truth: does a map highlight the object it should?"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def mask_to_grid(mask: np.ndarray, shape: tuple[int, int]) -> torch.Tensor:
    """A boolean image mask (H, W) → a boolean mask on a coarser grid: cells at least half covered."""
    m = torch.as_tensor(np.asarray(mask), dtype=torch.float32)[None, None]
    return F.adaptive_avg_pool2d(m, shape)[0, 0] >= 0.5


def inside_outside(saliency: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """Mean saliency per pixel inside and outside ``mask`` (NaN where a side is empty)."""
    s = saliency.float()
    inside = s[mask].mean().item() if mask.any() else float("nan")
    outside = s[~mask].mean().item() if (~mask).any() else float("nan")
    return inside, outside


def pointing_game(saliency: torch.Tensor, mask: torch.Tensor) -> float:
    """1.0 if the map's maximum lies inside ``mask``, else 0.0; tied maxima count by the share inside
    (so a flat map scores the mask's area, not a hit)."""
    s = saliency.float()
    return mask[s == s.max()].float().mean().item()
