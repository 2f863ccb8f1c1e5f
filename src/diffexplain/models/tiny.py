"""Random-init tiny but real diffusers pipelines for tests and smoke runs (each built in well under a second).

- ``sd``: a ``StableDiffusionPipeline`` like SD 1.x (ε-prediction, DDIM);
- ``sd2``: like SD 2.x (v-prediction, linear-projection transformers, per-block head counts);
- ``sdxl``: a ``StableDiffusionXLPipeline`` (two text encoders, pooled text embeddings and time ids added to the
  timestep embedding, Euler sampler) — the component shapes of diffusers' own SDXL pipeline tests, smaller.
All use the Shapes world's local tokenizer (no hub download); images are 16×16, latents 8×8×4.
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from diffexplain.errors import check
from diffexplain.config.options import MODEL_VARIANTS as VARIANTS
from diffexplain.config.options import TINY_UNETS, TINY_VAE
from diffexplain.world.tokenizer import load_tokenizer

BETAS = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "steps_offset": 1}


def _text_config(tokenizer) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=tokenizer.model_max_length, projection_dim=32, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def _vae() -> AutoencoderKL:
    return AutoencoderKL(**TINY_VAE)


def _sd(tokenizer, v2: bool) -> StableDiffusionPipeline:
    text_encoder = CLIPTextModel(_text_config(tokenizer))
    vae = _vae()
    unet = UNet2DConditionModel(**TINY_UNETS["sd2" if v2 else "sd"])
    scheduler = DDIMScheduler(**BETAS, clip_sample=False, set_alpha_to_one=False,
                              prediction_type="v_prediction" if v2 else "epsilon")
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def _sdxl(tokenizer) -> StableDiffusionXLPipeline:
    text_encoder = CLIPTextModel(_text_config(tokenizer))
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(tokenizer))
    vae = _vae()
    unet = UNet2DConditionModel(**TINY_UNETS["sdxl"])
    scheduler = EulerDiscreteScheduler(**BETAS, timestep_spacing="leading", interpolation_type="linear")
    return StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tokenizer, tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
                                     add_watermarker=False)


def build_tiny_pipeline(seed: int = 0, variant: str = "sd"):
    """A random-init tiny pipeline of ``variant`` (sd | sd2 | sdxl), the same weights for the same seed."""
    check(variant in VARIANTS, "model.variant", variant, f"one of {list(VARIANTS)}")
    tokenizer = load_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = _sdxl(tokenizer) if variant == "sdxl" else _sd(tokenizer, v2=variant == "sd2")
    pipe.set_progress_bar_config(disable=True)
    return pipe
