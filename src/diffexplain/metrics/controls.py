"""Controls every explainer is measured against, beside the random map.

Random maps are a weak baseline: on the Shapes scenes a map computed from z_t alone — no model involved — wins both
games against random, because deleting any high-magnitude latent pixel changes any outcome. An explanation of the
*model* must beat (METHODS.md, "Confidence"):

- input-only maps of the explained latent z_t [C, h, w] (:func:`input_maps`):
  - ``magnitude``: Σ_c |z_t| — where the latent is large;
  - ``edges``: Σ_c of the Sobel gradient magnitude of each channel (replicate padding) — where the latent changes,
    a map a reader would call "where the objects are";
- ``randomised``: the same explainer's map computed on the fully re-initialised denoiser (the last stage of
  :func:`diffexplain.metrics.sanity.cascading_randomisation`), played in the *trained* model's games: if it scores
  as well, the game score is not the model's doing.

Input-only controls depend on the item and step only (cached across a sweep like ``random``); the randomised
control depends on the explainer too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diffexplain.config.options import INPUT_CONTROLS
from diffexplain.errors import check

_SOBEL = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])


def magnitude(z: torch.Tensor) -> torch.Tensor:
    """Σ_c |z| of a latent [C, h, w] → [h, w]."""
    return z.float().abs().sum(0)


def edges(z: torch.Tensor) -> torch.Tensor:
    """Σ_c √(g_x² + g_y²), the Sobel gradient magnitude of each channel of [C, h, w] (replicate padding) → [h, w]."""
    x = z.float()[:, None]  # [C, 1, h, w]
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    kx = _SOBEL.to(x.device)[None, None]
    gx = F.conv2d(padded, kx)
    gy = F.conv2d(padded, kx.transpose(-1, -2))
    return (gx ** 2 + gy ** 2).sqrt().sum(dim=(0, 1))


INPUT_MAPS = {"magnitude": magnitude, "edges": edges}


def input_maps(z: torch.Tensor, names=INPUT_CONTROLS) -> dict[str, torch.Tensor]:
    """The input-only control maps of a latent z_t [C, h, w]: ``{name: [h, w]}`` (float32, on z's device)."""
    check(z.ndim == 3, "latent", tuple(z.shape), "one latent [C, h, w]")
    return {name: INPUT_MAPS[name](z) for name in names if name in INPUT_MAPS}
