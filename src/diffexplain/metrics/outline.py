"""Where attribution mass lies relative to an object: its outline band versus its interior and the background —
the measurable form of "coarse outline first, discriminative details later"."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation, binary_erosion


def outline_regions(mask: np.ndarray, band: int = 1) -> dict[str, np.ndarray]:
    """Bool regions of an object ``mask``: ``outline`` = pixels within ``band`` pixels (chessboard distance) of the
    mask's edge on either side; ``edge`` = the outline's inner half (inside the mask); ``interior`` = the mask without
    its outline; ``background`` = outside the mask and its outline; ``object`` = the mask (edge + interior)."""
    mask = np.asarray(mask, dtype=bool)
    square = np.ones((2 * band + 1, 2 * band + 1), bool)
    grown = binary_dilation(mask, square)
    shrunk = binary_erosion(mask, square, border_value=0)
    return {"object": mask, "outline": grown & ~shrunk, "edge": mask & ~shrunk, "interior": shrunk,
            "background": ~grown}


def region_mass(saliency: np.ndarray, regions: dict[str, np.ndarray]) -> dict[str, float]:
    """``mass_<region>``: each region's share of the map's total (non-negative) mass; ``outline_vs_interior``: the
    mean mass per pixel on the outline over that in the interior (> 1: the outline carries more per pixel);
    ``edge_vs_interior``: the same with the outline's inner half only (object pixels on both sides, so a baseline
    equal to the background, which zeroes the outer half for Integrated Gradients, cannot decide it);
    ``object_vs_background``: the object over the background. Undefined entries (an empty region, a map without
    mass) are left out."""
    s = np.asarray(saliency, dtype=np.float64)
    total = s.sum()
    out = {}
    if total > 0:
        out = {f"mass_{name}": float(s[region].sum() / total) for name, region in regions.items()}
    for name, (num, den) in {"outline_vs_interior": ("outline", "interior"), "edge_vs_interior": ("edge", "interior"),
                             "object_vs_background": ("object", "background")}.items():
        a, b = regions[num], regions[den]
        if a.any() and b.any() and s[b].mean() > 0:
            out[name] = float(s[a].mean() / s[b].mean())
    return out
