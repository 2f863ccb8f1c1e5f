"""Localisation against ground truth: does a map highlight the object it should?

Every score comes with its chance level, so a reader can tell a hit from luck: a map that knows nothing puts
:func:`area_share` of its mass inside the object and has :func:`chance_iou` as its expected :func:`top_k_iou`.
Maps and masks live on the same grid (:func:`mask_to_grid`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats

from diffexplain.errors import check
from diffexplain.metrics.ranking import pixel_ranks


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


def _check_pair(saliency: torch.Tensor, mask: torch.Tensor) -> None:
    check(saliency.shape == mask.shape, "mask", tuple(mask.shape), f"a mask on the map's grid {tuple(saliency.shape)}")


def area_share(mask: torch.Tensor) -> float:
    """The object's share of the grid: the chance level of :func:`mass_inside` (and of the pointing game)."""
    return mask.float().mean().item()


def top_k_iou(saliency: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None) -> float:
    """IoU of the map thresholded at its top k pixels with the mask, k = the mask's pixel count.

    The threshold keeps the top (area share × 100) % of pixels, so the prediction has the object's size and no
    threshold is tuned; ties at the threshold are broken at random (seeded by ``generator``, None = seed 0).
    The mean over items and steps is the mIoU. NaN for an empty mask; chance level: :func:`chance_iou`.
    """
    _check_pair(saliency, mask)
    k = int(mask.sum())
    if k == 0:
        return float("nan")
    top = pixel_ranks(saliency, generator).to(mask.device) < k
    inter = int((top & mask).sum())
    return inter / (2 * k - inter)


def chance_iou(mask: torch.Tensor) -> float:
    """Expected :func:`top_k_iou` of a random map: E[X / (2k − X)] with X ~ Hypergeometric(P, k, k)
    (P pixels, k of them in the mask)."""
    n, k = mask.numel(), int(mask.sum())
    if k == 0:
        return float("nan")
    x = np.arange(max(0, 2 * k - n), k + 1)
    return float((stats.hypergeom.pmf(x, n, k, k) * x / (2 * k - x)).sum())


def mass_inside(saliency: torch.Tensor, mask: torch.Tensor) -> float:
    """Share of the map's positive mass inside the mask: Σ_mask max(s, 0) / Σ max(s, 0).

    Signed maps (Integrated Gradients, GradientSHAP, LIME) count their positive part — the evidence *for* the
    outcome; negative evidence is ignored, not subtracted. NaN for a map without positive values. Chance level:
    :func:`area_share`.
    """
    _check_pair(saliency, mask)
    pos = saliency.float().clamp(min=0)
    total = pos.sum().item()
    return pos[mask].sum().item() / total if total > 0 else float("nan")
