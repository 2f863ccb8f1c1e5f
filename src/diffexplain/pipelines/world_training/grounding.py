"""A TokenCompose-style grounding loss: each object's colour and shape tokens' cross-attention pulled into its mask."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from diffexplain.models.attention_capture import CrossAttentionRecorder

# positions of (colour, shape) of the first and second object in the tokens of 'a c s and a c s' (BOS first)
WORD_POSITIONS = ((2, 3), (6, 7))


class GroundingRecorder(CrossAttentionRecorder):
    """The explainer's cross-attention recorder, keeping each layer's head-averaged probabilities [B, q, K] with
    their gradients (for a training loss) instead of detached maps."""

    def __init__(self, unet):
        super().__init__(unet, (1, 1))
        self.probs: list[torch.Tensor] = []

    def record(self, name: str, probs: torch.Tensor, heads: int) -> None:
        self.probs.append(probs.view(probs.shape[0] // heads, heads, *probs.shape[1:]).mean(1))


def grounding_loss(probs: torch.Tensor, masks: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """TokenCompose's token loss (Wang et al., CVPR 2024) for one cross-attention layer: mean over the prompted
    objects of (1 − the share of the object's colour and shape tokens' attention that falls inside its mask)².

    ``probs`` [B, q, K] (q = s·s positions), ``masks`` uint8 [B, 2, H, W] (object k of the prompt; all zero when
    absent), ``keep`` bool [B] (False for the prompts replaced by "").
    """
    s = math.isqrt(probs.shape[1])
    inside = F.adaptive_avg_pool2d(masks.float(), (s, s)).flatten(2)  # [B, 2, q], soft
    attention = probs[:, :, torch.tensor(WORD_POSITIONS, device=probs.device)].permute(0, 2, 3, 1)  # [B, 2, 2, q]
    share = (attention * inside[:, :, None]).sum(-1) / attention.sum(-1).clamp_min(1e-8)
    valid = ((inside.sum(-1) > 0) & keep[:, None])[:, :, None].expand_as(share)
    return ((1 - share[valid]) ** 2).mean() if valid.any() else probs.sum() * 0
