"""Common interface of the similarity functions: higher = more similar, batched, differentiable."""
import torch
from torch import Tensor, nn

from diffexplain.errors import UserError, check


class Similarity(nn.Module):
    """Compare two batches ``a``, ``b`` of shape [B, C, H, W] item by item.

    ``forward(a, b)`` gives the scalar form [B]; ``map(a, b)`` the per-pixel form [B, H, W] where
    ``has_map``.  Either input may have batch size 1 and is then broadcast.  Outputs keep the dtype and
    device of the inputs and are differentiable.  ``domain`` is ``"any"`` (latents or images with any
    channel count) or ``"image"`` (RGB in [0, 1]; callers decode latents first).  Being an ``nn.Module``,
    a similarity moves any feature network it holds with ``.to(device)``.
    """

    name: str
    has_map: bool = True
    domain: str = "any"

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        raise NotImplementedError

    def map(self, a: Tensor, b: Tensor) -> Tensor:
        raise UserError("similarity", self.name, "has no map form; use ssim, structure, luminance, contrast or cosine")


def pair(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Check that ``a`` and ``b`` are [B, C, H, W] with equal C, H, W and broadcast the batch dimension."""
    check(a.ndim == 4 and b.ndim == 4, "similarity inputs", (tuple(a.shape), tuple(b.shape)), "must be [B,C,H,W]")
    check(
        a.shape[1:] == b.shape[1:] and (a.shape[0] == b.shape[0] or 1 in (a.shape[0], b.shape[0])),
        "similarity inputs",
        (tuple(a.shape), tuple(b.shape)),
        "must have equal C,H,W and equal batch sizes (or one of them 1)",
    )
    return torch.broadcast_tensors(a, b)  # type: ignore[return-value]
