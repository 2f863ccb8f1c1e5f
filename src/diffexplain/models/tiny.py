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
from diffexplain.world.tokenizer import load_tokenizer

VARIANTS = ("sd", "sd2", "sdxl")
BETAS = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "steps_offset": 1}


def _text_config(tokenizer) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=tokenizer.model_max_length, projection_dim=32, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def _vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=4,
        block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, sample_size=16)


def _sd(tokenizer, v2: bool) -> StableDiffusionPipeline:
    text_encoder = CLIPTextModel(_text_config(tokenizer))
    vae = _vae()
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
        attention_head_dim=(2, 4) if v2 else 4, use_linear_projection=v2, norm_num_groups=8)
    scheduler = DDIMScheduler(**BETAS, clip_sample=False, set_alpha_to_one=False,
                              prediction_type="v_prediction" if v2 else "epsilon")
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def _sdxl(tokenizer) -> StableDiffusionXLPipeline:
    text_encoder = CLIPTextModel(_text_config(tokenizer))
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(tokenizer))
    vae = _vae()
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,  # 6 time ids × 8 + the pooled embedding
        cross_attention_dim=32 + 32, norm_num_groups=8)  # both encoders' hidden states, concatenated
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
