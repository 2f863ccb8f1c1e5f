"""Recording cross-attention through diffusers' attention processors (DAAM-style), always restored.

``with CrossAttentionRecorder(denoiser, latent_hw, family=...) as rec:`` swaps the attention processors that relate
image tokens to text — a UNet's or PixArt's cross-attention (``attn2``), SD3's joint attention, Flux's double- and
single-stream joint attention (:mod:`diffexplain.models.joint_attention`) — for recording ones; each denoiser forward
inside the block appends one :class:`AttentionCall` holding the conditional rows' probabilities of image positions
over text tokens, averaged over heads, upsampled to the latent grid and summed over layers. ``layers`` limits the
recording (and its cost) to processors whose names start with one of them. With ``attached=True`` each call also
keeps every layer's raw probabilities [B·heads, q, K], still attached to the autograd graph (``AttentionCall.probs``),
for gradient-based relevance. On exit — also on error — the original processors are back and the hook that separates
calls is removed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


@dataclass
class AttentionCall:
    """Cross-attention of one UNet forward (the conditional half of the guidance batch).

    Layers are summed per native resolution while recording; upsampling to the latent grid happens once, on read.
    """

    latent_hw: tuple[int, int]
    sums: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)  # (h', w') → [N, K, h', w']
    mass: torch.Tensor | None = None  # [N, K]: Σ over layers of the mean (over positions) probability per token
    layers: list[str] = field(default_factory=list)
    probs: dict[str, tuple] = field(default_factory=dict)  # attached: layer → (probs, heads, block: see record)

    def add(self, name: str, maps: torch.Tensor, mass: torch.Tensor) -> None:
        hw = tuple(maps.shape[-2:])
        self.sums[hw] = maps if hw not in self.sums else self.sums[hw] + maps
        self.mass = mass if self.mass is None else self.mass + mass
        self.layers.append(name)

    def mean_maps(self) -> torch.Tensor:
        """Layer-averaged maps [N, K, h, w] on the latent grid."""
        total = sum(m if hw == self.latent_hw else
                    F.interpolate(m, size=self.latent_hw, mode="bilinear", align_corners=False)
                    for hw, m in self.sums.items())
        return total / len(self.layers)

    def mean_mass(self) -> torch.Tensor:
        """Layer-averaged share of attention per token [N, K] (rows sum to 1 over all K tokens)."""
        return self.mass / len(self.layers)


class RecordingAttnProcessor:
    """diffusers' plain ``AttnProcessor`` computation with the attention probabilities kept."""

    def __init__(self, recorder: CrossAttentionRecorder, name: str):
        self.recorder, self.name = recorder, name

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args,
                 **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, sequence_length, _ = (hidden_states.shape if encoder_hidden_states is None
                                          else encoder_hidden_states.shape)
        attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key, value = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
        query, key, value = attn.head_to_batch_dim(query), attn.head_to_batch_dim(key), attn.head_to_batch_dim(value)
        probs = attn.get_attention_scores(query, key, attention_mask)
        self.recorder.record(self.name, probs, attn.heads)
        hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def is_cross_attention(processor_name: str) -> bool:
    return ".attn2." in processor_name


def grid_shape(q: int, latent_hw: tuple[int, int]) -> tuple[int, int]:
    """The grid (h', w') of a layer with ``q`` positions: the latent grid downsampled by the layer's factor."""
    h, w = latent_hw
    scale = math.sqrt(h * w / q)
    return round(h / scale), round(w / scale)


def on_grid(p: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    """Per-position values [N, q, K] of a layer → maps [N, K, h', w'] on the layer's grid."""
    n, q, k = p.shape
    return p.transpose(1, 2).reshape(n, k, *grid_shape(q, latent_hw))


def recorded_processors(processors: dict, family: str) -> list[str]:
    """The processor names a recorder replaces: ``attn2`` (cross-attention) in UNets and PixArt; the joint ``attn``
    of SD3's and Flux's blocks (not SD3.5's image-only ``attn2``)."""
    if family in ("unet", "pixart"):
        return [n for n in processors if is_cross_attention(n)]
    return [n for n in processors if n.endswith(".attn.processor") and n.split(".")[0] in JOINT_BLOCKS]


JOINT_BLOCKS = ("transformer_blocks", "single_transformer_blocks")


class CrossAttentionRecorder:
    """Context manager recording image→text attention of every denoiser forward inside it (see module docstring).

    ``rows`` is the number of conditioning rows of the guidance batch (2 with classifier-free guidance, 1 for Flux
    without true CFG): the conditional rows are the last 1/``rows`` of the batch."""

    def __init__(self, denoiser, latent_hw: tuple[int, int], attached: bool = False, family: str = "unet",
                 rows: int = 2, layers: list[str] | None = None):
        self.denoiser, self.latent_hw, self.attached = denoiser, tuple(latent_hw), attached
        self.family, self.rows, self.layers = family, rows, layers
        self.calls: list[AttentionCall] = []
        self.text_length: int | None = None
        self._original = None
        self._hook = None

    def _processor(self, name: str, original):
        from diffexplain.models.joint_attention import JointRecordingProcessor

        if self.family in ("unet", "pixart"):
            return RecordingAttnProcessor(self, name)
        return JointRecordingProcessor(self, name, original, flux=self.family == "flux")

    def __enter__(self) -> CrossAttentionRecorder:
        self._original = dict(self.denoiser.attn_processors)
        chosen = [n for n in recorded_processors(self._original, self.family)
                  if self.layers is None or any(n.startswith(f"{layer}.") for layer in self.layers)]
        try:
            self.denoiser.set_attn_processor({name: self._processor(name, p) if name in chosen else p
                                              for name, p in self._original.items()})
            self._hook = self.denoiser.register_forward_pre_hook(self._new_call, with_kwargs=True)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _new_call(self, module, args, kwargs) -> None:
        text = kwargs.get("encoder_hidden_states")
        self.text_length = None if text is None else text.shape[1]  # Flux's single-stream blocks: [text; image]
        self.calls.append(AttentionCall(self.latent_hw))

    def __exit__(self, *exc) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self._original is not None:
            self.denoiser.set_attn_processor(self._original)
            self._original = None

    def conditional_rows(self, batch: int) -> slice:
        """The conditional rows of a guidance batch of ``batch`` rows."""
        return slice(batch - batch // self.rows, batch)

    def record(self, name: str, probs: torch.Tensor, heads: int, block=None) -> None:
        """Keep the conditional rows of [B·heads, q, K] probabilities, head-averaged, on the layer's grid (and the
        raw probabilities themselves when ``attached``). ``block`` maps the tensor recorded (e.g. a joint layer's
        full [B, H, S, S] probabilities, the one the forward used) to its image→text block [B·heads, q, K]; the
        gradient w.r.t. the recorded tensor goes through the same map."""
        block = block or (lambda x: x)
        if self.attached:
            self.calls[-1].probs[name] = (probs, heads, block)
        with torch.no_grad():
            probs = block(probs)
            b = probs.shape[0] // heads
            p = probs.detach().float().view(b, heads, *probs.shape[1:])[self.conditional_rows(b)]
            self.add_probabilities(name, p)

    def add_probabilities(self, name: str, probs: torch.Tensor) -> None:
        """Add one layer's conditional-row probabilities [N, heads, q, K] (averaged over heads here). A joint
        layer's share per token is taken among the text tokens (its probabilities over them sum to less than 1)."""
        p = probs.float().mean(1)
        mass = p.mean(1)
        if self.family in ("sd3", "flux"):
            mass = mass / mass.sum(-1, keepdim=True).clamp_min(torch.finfo(mass.dtype).tiny)
        self.calls[-1].add(name, on_grid(p, self.latent_hw), mass)
