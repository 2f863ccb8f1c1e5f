"""Models: loading diffusers pipelines and the ``DiffusionModel`` adapter explainers drive."""

import logging

# Importing SD pipelines makes transformers warn that torchvision is missing; it is kept out on purpose (its
# binaries break against the pinned torch) and no image processor of ours needs it.
logging.getLogger("transformers.utils.import_utils").addFilter(lambda r: "requires torchvision" not in r.getMessage())

from diffexplain.models.diffusion import Conditioning, DiffusionModel, Trajectory
from diffexplain.models.loading import load_pipeline


def tiny_model(seed: int = 0, guidance_scale: float = 7.5, scheduler: str | None = None, variant: str = "sd",
               dtype: str = "float32", scheduler_config: dict | None = None, eta: float = 0.0,
               resolution: int | None = None, true_cfg_scale: float = 1.0) -> DiffusionModel:
    """``model=tiny``: a random-init tiny pipeline (``variant`` sd | sd2 | sdxl | sd3 | flux | pixart) in ``dtype``,
    wrapped; the transformer variants' T5 prompts are TINY_MAX_SEQUENCE_LENGTH tokens long."""
    from diffexplain.config.options import TINY_MAX_SEQUENCE_LENGTH, TINY_VAE, TRANSFORMER_VARIANTS
    from diffexplain.models.loading import torch_dtype
    from diffexplain.models.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline(seed, variant)
    if torch_dtype(dtype) != pipe.vae.dtype:
        pipe.to(dtype=torch_dtype(dtype))
    return DiffusionModel(pipe, guidance_scale=guidance_scale, scheduler=scheduler, scheduler_config=scheduler_config,
                          eta=eta, resolution=resolution or TINY_VAE["sample_size"], true_cfg_scale=true_cfg_scale,
                          max_sequence_length=TINY_MAX_SEQUENCE_LENGTH if variant in TRANSFORMER_VARIANTS else None)


__all__ = ["Conditioning", "DiffusionModel", "Trajectory", "load_pipeline", "tiny_model"]
