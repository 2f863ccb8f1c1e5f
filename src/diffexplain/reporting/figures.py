"""Figures written under ``figures/``: image grids over steps, heatmaps overlaid on images."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def image_row(images: list[np.ndarray], titles: list[str], path: Path, suptitle: str = "",
              overlays: list[np.ndarray] | None = None, max_cols: int = 10) -> Path:
    """Images (HWC in [0, 1]) in rows of ``max_cols``, optionally with heatmaps (HW) overlaid; saved atomically."""
    n = len(images)
    cols = min(n, max_cols)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (img, title) in enumerate(zip(images, titles)):
        ax = axes.flat[k]
        ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
        if overlays is not None:
            h, w = img.shape[:2]
            ax.imshow(overlays[k], cmap="jet", alpha=0.5, extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="bilinear")
        ax.set_title(title, fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
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
