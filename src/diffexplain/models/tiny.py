"""Random-init tiny but real diffusers pipelines for tests and smoke runs (each built in well under a second).

- ``sd``: a ``StableDiffusionPipeline`` like SD 1.x (ε-prediction, DDIM);
- ``sd2``: like SD 2.x (v-prediction, linear-projection transformers, per-block head counts);
- ``sdxl``: a ``StableDiffusionXLPipeline`` (two text encoders, pooled text embeddings and time ids added to the
  timestep embedding, Euler sampler) — the component shapes of diffusers' own SDXL pipeline tests, smaller;
- ``sd3``: a ``StableDiffusion3Pipeline`` (MMDiT joint attention, two CLIP encoders, no T5, flow matching);
- ``flux``: a ``FluxPipeline`` like Flux.1-dev (double- and single-stream blocks, packed 2×2 latent tokens, RoPE,
  distilled guidance embedding; CLIP pooled + T5 sequence);
- ``pixart``: a ``PixArtSigmaPipeline`` (DiT with cross-attention to T5, learned-sigma output halves, DPM-Solver).
The CLIP encoders use the Shapes world's local tokenizer, the T5 encoders its T5-style one (no hub download); images
are 16×16, latents 8×8×4 (``model.resolution`` scales both).
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    PixArtSigmaPipeline,
    PixArtTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

from diffexplain.errors import check
from diffexplain.config.options import MODEL_VARIANTS as VARIANTS
from diffexplain.config.options import TINY_MAX_SEQUENCE_LENGTH, TINY_T5, TINY_TRANSFORMERS, TINY_UNETS, TINY_VAE
from diffexplain.world.tokenizer import load_t5_tokenizer, load_tokenizer

BETAS = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "steps_offset": 1}


def _text_config(tokenizer) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=tokenizer.model_max_length, projection_dim=32, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def _vae(**config) -> AutoencoderKL:
    return AutoencoderKL(**TINY_VAE, **config)


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


def _t5(tokenizer) -> T5EncoderModel:
    return T5EncoderModel(T5Config(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                   eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=0, **TINY_T5))


def _sd3(tokenizer) -> StableDiffusion3Pipeline:
    encoders = [CLIPTextModelWithProjection(_text_config(tokenizer)) for _ in range(2)]
    return StableDiffusion3Pipeline(
        transformer=SD3Transformer2DModel(**TINY_TRANSFORMERS["sd3"]), scheduler=FlowMatchEulerDiscreteScheduler(),
        vae=_vae(shift_factor=0.0), text_encoder=encoders[0], tokenizer=tokenizer, text_encoder_2=encoders[1], tokenizer_2=tokenizer,
        text_encoder_3=None, tokenizer_3=None)


def _flux(tokenizer) -> FluxPipeline:
    t5_tokenizer = load_t5_tokenizer(TINY_MAX_SEQUENCE_LENGTH)
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_image_seq_len=16,
                                                max_image_seq_len=1024, base_shift=0.5, max_shift=1.15)
    return FluxPipeline(transformer=FluxTransformer2DModel(**TINY_TRANSFORMERS["flux"]), scheduler=scheduler,
                        vae=_vae(shift_factor=0.0), text_encoder=CLIPTextModel(_text_config(tokenizer)), tokenizer=tokenizer,
                        text_encoder_2=_t5(t5_tokenizer), tokenizer_2=t5_tokenizer)


def _pixart() -> PixArtSigmaPipeline:
    t5_tokenizer = load_t5_tokenizer(TINY_MAX_SEQUENCE_LENGTH)
    return PixArtSigmaPipeline(tokenizer=t5_tokenizer, text_encoder=_t5(t5_tokenizer), vae=_vae(),
                               transformer=PixArtTransformer2DModel(**TINY_TRANSFORMERS["pixart"]),
                               scheduler=DPMSolverMultistepScheduler(**BETAS))


def _build(variant: str, tokenizer):
    if variant in ("sd", "sd2"):
        return _sd(tokenizer, v2=variant == "sd2")
    return {"sdxl": _sdxl, "sd3": _sd3, "flux": _flux}[variant](tokenizer) if variant != "pixart" else _pixart()


def build_tiny_pipeline(seed: int = 0, variant: str = "sd"):
    """A random-init tiny pipeline of ``variant`` (sd | sd2 | sdxl | sd3 | flux | pixart), the same weights for the
    same seed."""
    check(variant in VARIANTS, "model.variant", variant, f"one of {list(VARIANTS)}")
    tokenizer = load_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = _build(variant, tokenizer)
    for component in pipe.components.values():  # built, not loaded: switch T5's dropout off as from_pretrained does
        if isinstance(component, torch.nn.Module):
            component.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe
