"""Models: loading diffusers pipelines and the ``DiffusionModel`` adapter explainers drive."""

import logging

# Importing SD pipelines makes transformers warn that torchvision is missing; it is kept out on purpose (its
# binaries break against the pinned torch) and no image processor of ours needs it.
logging.getLogger("transformers.utils.import_utils").addFilter(lambda r: "requires torchvision" not in r.getMessage())

from diffexplain.models.diffusion import Conditioning, DiffusionModel, Trajectory
from diffexplain.models.loading import load_pipeline


def tiny_model(seed: int = 0, guidance_scale: float = 7.5, scheduler: str | None = None, variant: str = "sd",
               dtype: str = "float32", scheduler_config: dict | None = None, eta: float = 0.0) -> DiffusionModel:
    """``model=tiny``: a random-init tiny pipeline (``variant`` sd | sd2 | sdxl) in ``dtype``, wrapped."""
    from diffexplain.models.loading import torch_dtype
    from diffexplain.models.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline(seed, variant)
    if torch_dtype(dtype) != pipe.unet.dtype:
        pipe.to(dtype=torch_dtype(dtype))
    return DiffusionModel(pipe, guidance_scale=guidance_scale, scheduler=scheduler, scheduler_config=scheduler_config,
                          eta=eta)


__all__ = ["Conditioning", "DiffusionModel", "Trajectory", "load_pipeline", "tiny_model"]
