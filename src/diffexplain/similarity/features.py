"""Feature networks of single-image FID (``similarity=fid``), chosen by ``similarity.features``.

``shapes``: the embedded Shapes classifier's 16×16 conv features, for the Shapes world's 32×32 images only.
``dinov2``: DINOv2's patch tokens (any ``transformers`` DINOv2 checkpoint, loaded with ``AutoModel.from_pretrained``),
for photographs of any size (Stable Diffusion, Flux). ``auto``: ``shapes`` on the Shapes world, ``dinov2`` otherwise
(:func:`diffexplain.config.options.fid_features`). Each maps RGB images in [0, 1] to [B, D, h, w] with h·w > 1.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from diffexplain.config.options import DINOV2_HUB_ID
from diffexplain.errors import UserError, check

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class DINOv2Features(nn.Module):
    """A frozen DINOv2's patch features [B, D, h, w] of RGB images [B, 3, H, W] in [0, 1].

    Images are resized (bilinear, antialiased) to the nearest multiple of the patch size, at least 2 patches a side,
    normalised with ImageNet's mean and std and run in the network's dtype and device (wherever ``.to`` put it); the
    patch tokens of the last hidden state (after the class and any register tokens) are laid out on their grid.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.patch = int(model.config.patch_size)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Patches (rows, columns) an image of ``height`` × ``width`` is resized to."""
        return max(2, round(height / self.patch)), max(2, round(width / self.patch))

    def forward(self, x: Tensor) -> Tensor:
        h, w = self.grid(*x.shape[-2:])
        size = (h * self.patch, w * self.patch)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        x = (x - self.mean.to(x)) / self.std.to(x)
        weight = next(self.model.parameters())
        tokens = self.model(pixel_values=x.to(weight.device, weight.dtype)).last_hidden_state
        return tokens[:, -h * w:].mT.unflatten(-1, (h, w))


def dinov2_features(path: str | Path = DINOV2_HUB_ID) -> DINOv2Features:
    """DINOv2 features from ``path`` (a hub id or a ``save_pretrained`` directory); a model that cannot be loaded
    (not downloaded under ``HF_HUB_OFFLINE=1``, no such directory, not a ViT) is one :class:`UserError`."""
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(str(path))
    except (OSError, ValueError, KeyError) as e:
        reason = " ".join(str(e).split())[:200]
        raise UserError("similarity.dinov2_path", str(path), "a DINOv2 model for similarity.features=dinov2 (auto "
                        "on a non-Shapes model): a save_pretrained directory, or a hub id (with HF_HUB_OFFLINE=1: "
                        f"already in the Hugging Face cache); loading failed: {type(e).__name__}: {reason}") from e
    check(isinstance(getattr(model.config, "patch_size", None), int), "similarity.dinov2_path", str(path),
          f"a DINOv2 (vision transformer) model; {type(model).__name__} has no patch_size")
    return DINOv2Features(model)


def shapes_features(path: str | Path) -> nn.Module:
    """The embedded Shapes classifier's conv features [B, D, 16, 16] (its 32×32 images only)."""
    from diffexplain.world.classifier import classifier_features

    return classifier_features(path)


def hydra_model_choice() -> str | None:
    """The ``model=`` config the running Hydra job composed (None outside a Hydra job)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get().runtime.choices.get("model")
    except (ImportError, ValueError, AttributeError):
        return None
