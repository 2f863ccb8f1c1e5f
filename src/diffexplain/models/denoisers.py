"""How each family of text-to-image pipelines encodes a prompt and calls its denoiser, behind ``DiffusionModel``.

Every family maps latents on the *unpacked* latent grid [B, C, h, w] to model outputs on the same grid, so explainers,
maps and masks never see a family's token layout:

- ``unet``: Stable Diffusion 1.x/2.x, SDXL and the Shapes world (``UNet2DConditionModel``, cross-attention ``attn2``);
- ``sd3``: Stable Diffusion 3 / 3.5 (``SD3Transformer2DModel``: MMDiT joint attention over [image; text] tokens, CLIP
  ×2 + optional T5, pooled projections, flow matching);
- ``flux``: Flux.1 (``FluxTransformer2DModel``: joint double-stream blocks, then single-stream blocks over
  [text; image]; 2×2 latent patches packed into tokens, RoPE ids, the distilled guidance embedding of dev; T5 sequence
  + CLIP pooled);
- ``pixart``: PixArt-α/Σ (``PixArtTransformer2DModel``: DiT with cross-attention to T5, learned-sigma output halves).

Classifier-free guidance: every family but Flux runs the unconditional and conditional halves in one call
(``rows`` = 2). Flux.1 is guidance-distilled: one conditional row, unless ``true_cfg_scale`` > 1 (then the negative
prompt is the unconditional row, as ``FluxPipeline``'s true CFG).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from diffexplain.config.options import DENOISER_FAMILIES, TRANSFORMER_FAMILIES
from diffexplain.errors import check


def output_tensor(output) -> torch.Tensor | None:
    """The tensor a module hands on: its output, or the first tensor in a tuple or a diffusers ``BaseOutput``
    (``Transformer2DModel`` returns ``(sample,)`` inside UNet blocks, an output object otherwise)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            tensor = output_tensor(item)
            if tensor is not None:
                return tensor
    return None


class UNetDenoiser:
    """SD 1.x/2.x, SDXL and the Shapes world."""

    family = "unet"
    attribute = "unet"

    def __init__(self, pipe):
        self.pipe = pipe

    @property
    def module(self):
        return getattr(self.pipe, self.attribute)

    def latent_channels(self, module) -> int:
        return module.config.in_channels

    def default_latent_side(self) -> int:
        return self.module.config.sample_size

    @property
    def word_tokenizer(self):
        """The tokenizer whose tokens are the text keys the image attends to."""
        return self.pipe.tokenizer

    def rows(self, true_cfg_scale: float) -> int:
        return 2

    def cfg_scale(self, guidance_scale: float, true_cfg_scale: float) -> float:
        """The classifier-free guidance scale ``DiffusionModel.guide`` applies."""
        return guidance_scale

    def token_side(self) -> tuple[int, str]:
        """Latent pixels per token side and why (the resolution must be a multiple of it × the VAE's factor)."""
        return 1, ""

    def encode(self, prompt: str, negative_prompt: str, device, resolution: int, rows: int,
               max_sequence_length: int | None, guidance_scale: float) -> tuple[torch.Tensor, dict]:
        """``(embeds [rows, L, D], added {name: [rows, ...]})``: row 0 unconditional when ``rows`` = 2."""
        out = self.pipe.encode_prompt(prompt=prompt, device=device, num_images_per_prompt=1,
                                      do_classifier_free_guidance=True, negative_prompt=negative_prompt or None)
        if len(out) == 4:  # SDXL: (embeds, negative, pooled, negative pooled)
            embeds, neg, pooled, neg_pooled = out
            time_ids = torch.tensor([[resolution, resolution, 0, 0, resolution, resolution]], device=device,
                                    dtype=embeds.dtype)
            return torch.cat([neg, embeds]), {"text_embeds": torch.cat([neg_pooled, pooled]),
                                              "time_ids": time_ids.repeat(2, 1)}
        embeds, neg = out
        return torch.cat([neg, embeds]), {}

    def forward(self, module, x: torch.Tensor, t, embeds: torch.Tensor, added: dict) -> torch.Tensor:
        kwargs = {"added_cond_kwargs": added} if added else {}
        return module(x, t, encoder_hidden_states=embeds, return_dict=False, **kwargs)[0]

    def schedule_kwargs(self, num_steps: int, latent_hw) -> dict:
        """Extra arguments of ``scheduler.set_timesteps`` the family's own pipeline passes."""
        return {}

    def image_stream(self, output):
        """A block's output tensor on the image tokens (or feature map); None where it has none."""
        return output_tensor(output)


class SD3Denoiser(UNetDenoiser):
    """Stable Diffusion 3 / 3.5: joint blocks return (text, image); text tokens are CLIP (77, padded to the T5 width)
    followed by T5's (zeros when the pipeline has no T5)."""

    family = "sd3"
    attribute = "transformer"

    def encode(self, prompt, negative_prompt, device, resolution, rows, max_sequence_length, guidance_scale):
        kwargs = {} if max_sequence_length is None else {"max_sequence_length": max_sequence_length}
        embeds, neg, pooled, neg_pooled = self.pipe.encode_prompt(
            prompt=prompt, prompt_2=None, prompt_3=None, device=device, num_images_per_prompt=1,
            do_classifier_free_guidance=True, negative_prompt=negative_prompt or None, **kwargs)
        return torch.cat([neg, embeds]), {"pooled_projections": torch.cat([neg_pooled, pooled])}

    def forward(self, module, x, t, embeds, added):
        timestep = torch.as_tensor(t, device=x.device).float().expand(x.shape[0])
        return module(hidden_states=x, timestep=timestep, encoder_hidden_states=embeds,
                      pooled_projections=added["pooled_projections"], return_dict=False)[0]

    def token_side(self):
        patch = self.module.config.patch_size or 1
        return patch, f"its patch size {patch}"

    def image_stream(self, output):
        if isinstance(output, tuple):  # JointTransformerBlock: (text, image); the last block's text is None
            return output[-1]
        return output


class FluxDenoiser(SD3Denoiser):
    """Flux.1: tokens are 2×2 patches of the latent (``pack``/``unpack``); text (T5) tokens come first in every
    joint attention."""

    family = "flux"

    def latent_channels(self, module) -> int:
        return module.config.in_channels // 4

    def default_latent_side(self) -> int:
        return self.pipe.default_sample_size

    @property
    def word_tokenizer(self):
        return self.pipe.tokenizer_2

    def rows(self, true_cfg_scale: float) -> int:
        return 2 if true_cfg_scale > 1 else 1

    def cfg_scale(self, guidance_scale, true_cfg_scale):
        return true_cfg_scale  # guidance_scale is the distilled guidance, an input of the transformer

    def token_side(self):
        return 2, "its 2x2 packing of latent patches"

    def encode(self, prompt, negative_prompt, device, resolution, rows, max_sequence_length, guidance_scale):
        kwargs = {} if max_sequence_length is None else {"max_sequence_length": max_sequence_length}

        def one(text):
            embeds, pooled, _ = self.pipe.encode_prompt(prompt=text, prompt_2=None, device=device,
                                                        num_images_per_prompt=1, **kwargs)
            return embeds, pooled

        halves = [one(negative_prompt), one(prompt)] if rows == 2 else [one(prompt)]
        added = {"pooled_projections": torch.cat([p for _, p in halves])}
        if self.module.config.guidance_embeds:  # Flux.1-dev's distilled guidance (schnell has none)
            added["guidance"] = torch.full((rows,), float(guidance_scale), device=device)
        return torch.cat([e for e, _ in halves]), added

    @staticmethod
    def pack(x: torch.Tensor) -> torch.Tensor:
        """[B, C, h, w] → [B, (h/2)·(w/2), 4C] tokens (``FluxPipeline._pack_latents``)."""
        b, c, h, w = x.shape
        return x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)

    @staticmethod
    def unpack(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """The inverse of :meth:`pack`."""
        b, _, d = tokens.shape
        return tokens.view(b, h // 2, w // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, d // 4, h, w)

    def forward(self, module, x, t, embeds, added):
        from diffusers import FluxPipeline

        b, _, h, w = x.shape
        timestep = torch.as_tensor(t, device=x.device).float().expand(b) / 1000
        guidance = added.get("guidance")
        guidance = None if guidance is None else guidance.float()
        img_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, x.device, x.dtype)
        txt_ids = torch.zeros(embeds.shape[1], 3, device=x.device, dtype=x.dtype)
        out = module(hidden_states=self.pack(x), timestep=timestep, guidance=guidance,
                     pooled_projections=added["pooled_projections"], encoder_hidden_states=embeds, txt_ids=txt_ids,
                     img_ids=img_ids, return_dict=False)[0]
        return self.unpack(out, h, w)

    def schedule_kwargs(self, num_steps, latent_hw):
        """``FluxPipeline``'s sigmas (linspace(1, 1/n, n)) and its resolution-dependent shift ``mu``."""
        import numpy as np

        config = self.pipe.scheduler.config
        if not config.get("use_dynamic_shifting", False):
            return {}
        seq_len = (latent_hw[0] // 2) * (latent_hw[1] // 2)
        base, top = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
        lo, hi = config.get("base_shift", 0.5), config.get("max_shift", 1.15)
        mu = lo + (hi - lo) / (top - base) * (seq_len - base)
        return {"sigmas": np.linspace(1.0, 1 / num_steps, num_steps).tolist(), "mu": mu}


class PixArtDenoiser(UNetDenoiser):
    """PixArt-α/Σ: a DiT whose blocks cross-attend (``attn2``) to T5 tokens; the output's second half of channels is
    the learned variance, dropped as the pipeline does."""

    family = "pixart"
    attribute = "transformer"

    def encode(self, prompt, negative_prompt, device, resolution, rows, max_sequence_length, guidance_scale):
        kwargs = {} if max_sequence_length is None else {"max_sequence_length": max_sequence_length}
        embeds, mask, neg, neg_mask = self.pipe.encode_prompt(
            prompt, do_classifier_free_guidance=True, negative_prompt=negative_prompt, num_images_per_prompt=1,
            device=device, **kwargs)
        added = {"encoder_attention_mask": torch.cat([neg_mask, mask])}
        if self.module.use_additional_conditions:  # PixArt-α 1024: size and aspect-ratio micro-conditions
            added["resolution"] = torch.tensor([[resolution, resolution]] * 2, device=device, dtype=embeds.dtype)
            added["aspect_ratio"] = torch.ones(2, 1, device=device, dtype=embeds.dtype)
        return torch.cat([neg, embeds]), added

    def token_side(self):
        patch = self.module.config.patch_size or 1
        return patch, f"its patch size {patch}"

    def forward(self, module, x, t, embeds, added):
        timestep = torch.as_tensor(t, device=x.device).expand(x.shape[0])
        micro = {k: added.get(k) for k in ("resolution", "aspect_ratio")}
        out = module(x, encoder_hidden_states=embeds, encoder_attention_mask=added["encoder_attention_mask"],
                     timestep=timestep, added_cond_kwargs=micro, return_dict=False)[0]
        if module.config.out_channels // 2 == x.shape[1]:
            out = out.chunk(2, dim=1)[0]
        return out


DENOISERS = {cls.family: cls for cls in (UNetDenoiser, SD3Denoiser, FluxDenoiser, PixArtDenoiser)}
assert tuple(DENOISERS) == DENOISER_FAMILIES


def denoiser_for(pipe) -> UNetDenoiser:
    """The family adapter of a diffusers pipeline, from the class of its denoiser."""
    module = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    name = type(module).__name__
    family = {"UNet2DConditionModel": "unet", **TRANSFORMER_FAMILIES}.get(name)
    check(family is not None, "model.path", type(pipe).__name__,
          "a pipeline whose denoiser is a UNet2DConditionModel (SD 1.x/2.x, SDXL), SD3Transformer2DModel (SD3/3.5), "
          f"FluxTransformer2DModel (Flux.1) or PixArtTransformer2DModel (PixArt-α/Σ); this one has {name}")
    return DENOISERS[family](pipe)


