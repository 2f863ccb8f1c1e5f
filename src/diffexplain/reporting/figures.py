"""Figures written under ``figures/``: image grids over steps, heatmaps overlaid on images."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def wrap(text: str, width_in: float, fontsize: float) -> str:
    """``text`` broken into lines that fit ``width_in`` inches at ``fontsize`` points (about 0.55 em per character)."""
    chars = max(int(width_in * 72 / (0.55 * fontsize)), 8)
    return "\n".join(textwrap.wrap(text, chars, break_long_words=True)) if len(text) > chars else text


def normalised(heatmap: np.ndarray) -> np.ndarray:
    """A map min-max scaled to [0, 1] (a constant map: zeros), as every overlay is drawn."""
    m = np.asarray(heatmap, dtype=np.float32)
    lo, hi = float(np.nanmin(m)), float(np.nanmax(m))
    return (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)


def colour_bar(fig, axes, label: str = "saliency (min–max per map)", cmap: str = "jet"):
    """One colour bar for a grid of overlays drawn in [0, 1] (low → high)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=axes, shrink=0.8, aspect=30, pad=0.02)
    bar.set_ticks([0, 1], labels=["low", "high"])
    bar.ax.tick_params(labelsize=7)
    bar.set_label(label, fontsize=7)
    return bar


def image_row(images: list[np.ndarray], titles: list[str], path: Path, suptitle: str = "",
              overlays: list[np.ndarray] | None = None, max_cols: int = 10) -> Path:
    """Images (HWC in [0, 1]) in rows of ``max_cols``, optionally with heatmaps (HW, each min-max scaled, one colour
    bar) overlaid; titles wrapped to fit; saved atomically."""
    n = len(images)
    cols = min(n, max_cols)
    rows = -(-n // cols)
    width = 1.6 * cols + (0.9 if overlays is not None else 0)
    fig, axes = plt.subplots(rows, cols, figsize=(width, 1.8 * rows + 0.5), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for k, (img, title) in enumerate(zip(images, titles)):
        ax = axes.flat[k]
        ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
        if overlays is not None:
            h, w = img.shape[:2]
            ax.imshow(normalised(overlays[k]), cmap="jet", alpha=0.5, vmin=0, vmax=1,
                      extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="bilinear")
        ax.set_title(wrap(title, 1.5, 7), fontsize=7)
    if overlays is not None:
        colour_bar(fig, axes)
    if suptitle:
        fig.suptitle(wrap(suptitle, width - 0.2, 9), fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """A heatmap (h × w, any range) upsampled onto an image (H × W × 3, uint8 or [0, 1]) in the jet colormap: uint8."""
    import torch
    import torch.nn.functional as F

    base = image.astype(np.float32) / 255 if image.dtype == np.uint8 else np.clip(image, 0, 1)
    h, w = base.shape[:2]
    m = torch.as_tensor(np.asarray(heatmap, dtype=np.float32))[None, None]
    m = F.interpolate(m, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()
    lo, hi = float(m.min()), float(m.max())
    m = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
    colour = plt.get_cmap("jet")(m)[..., :3]
    return ((1 - alpha) * base + alpha * colour).clip(0, 1).__mul__(255).round().astype(np.uint8)
