"""Training data of the Shapes world: rendered scenes as uint8 tensors, object masks and token ids."""

from __future__ import annotations

import numpy as np
import torch

from diffexplain.world.scenes import sample_scene


def render_scenes(n: int, seed: int, n_objects: int | None = None, **render_kw) -> tuple[torch.Tensor, list]:
    """``n`` scenes from a seeded rng: uint8 images [n, 3, 32, 32] (the colours are exactly 0/255) and the scenes."""
    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng, n_objects, **render_kw) for _ in range(n)]
    images = np.stack([s.image for s in scenes]).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.round(images * 255).astype(np.uint8)), scenes


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 → float in [0, 1]."""
    return images.float() / 255


def object_masks(scenes: list) -> torch.Tensor:
    """uint8 [N, 2, H, W]: the mask of each scene's first and second prompted object (zeros when there is none)."""
    h, w = scenes[0].objects[0].mask.shape
    out = np.zeros((len(scenes), 2, h, w), np.uint8)
    for i, scene in enumerate(scenes):
        for k, obj in enumerate(scene.objects):
            out[i, k] = obj.mask
    return torch.from_numpy(out)


def tokenize(tokenizer, prompts: list[str]) -> torch.Tensor:
    """Token ids [N, L] padded to the tokenizer's length, exactly as ``StableDiffusionPipeline.encode_prompt`` does."""
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids
