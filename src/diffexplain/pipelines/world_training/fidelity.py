"""Judge generated Shapes samples against their prompts: is each object there, in the right colour and shape?

Per prompted object (colour c, shape s): its *colour is right* when :func:`detect_objects` finds a blob of
colour c (≥ ``min_pixels`` pixels); its *shape is right* when, in addition, the classifier applied to the
largest c blob isolated on black (blob dilated by one pixel, everything else black) gives s the highest shape
probability (summed over colours). A two-object sample has *both present* when both colours are found, and its
*order* right when the first-named object is the left one. A sample is *exact* when every object is right, the
order is right and no other blob is found.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from scipy.ndimage import binary_dilation

from diffexplain.models.diffusion import DiffusionModel
from diffexplain.world.classifier import ShapesClassifier
from diffexplain.world.scenes import SHAPES, all_prompts, parse_prompt
from diffexplain.world.segment import detect_objects


def eval_set(n: int = 200) -> list[tuple[str, int]]:
    """``n`` (prompt, seed) pairs: half cycle the 12 one-object prompts, half the 72 two-object ones; seed = index."""
    singles, pairs = all_prompts(1), all_prompts(2)
    half = n // 2
    prompts = [singles[i % len(singles)] for i in range(half)] + [pairs[i % len(pairs)] for i in range(n - half)]
    return [(p, i) for i, p in enumerate(prompts)]


@torch.no_grad()
def generate_samples(model: DiffusionModel, prompts: Sequence[str], seeds: Sequence[int], num_steps: int,
                     batch_size: int = 50) -> np.ndarray:
    """Images [N, H, W, 3] in [0, 1] from the model's pipeline, its scheduler and guidance, batched.

    Seed i starts from ``model.initial_latents(i)``, the z_T that ``model.generate(prompt, i, ...)`` uses.
    """
    images = []
    for start in range(0, len(prompts), batch_size):
        chunk = slice(start, start + batch_size)
        latents = torch.cat([model.initial_latents(s) for s in seeds[chunk]])
        extra = {} if model.max_sequence_length is None else {"max_sequence_length": model.max_sequence_length}
        out = model.pipe(prompt=list(prompts[chunk]), latents=latents, num_inference_steps=num_steps,
                         guidance_scale=model.guidance_scale, output_type="np", **extra)
        images.append(out.images)
    return np.concatenate(images).astype(np.float32)


def isolate(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` with everything outside ``mask`` (dilated by one pixel) set to black."""
    return image * binary_dilation(mask, iterations=1)[..., None]


def judge(images: Sequence[np.ndarray], prompts: Sequence[str], classifier: ShapesClassifier,
          min_pixels: int = 10) -> pd.DataFrame:
    """One row per prompted object: sample, prompt, colour, shape, colour_ok, shape_ok, predicted, x, extra blobs."""
    rows, crops = [], []
    for i, (image, prompt) in enumerate(zip(images, prompts)):
        found = detect_objects(image, min_pixels)
        pairs = parse_prompt(prompt)
        for k, (colour, shape) in enumerate(pairs):
            blobs = [mask for c, mask in found if c == colour]
            mask = max(blobs, key=np.sum) if blobs else np.zeros(image.shape[:2], bool)
            rows.append({"sample": i, "prompt": prompt, "n_objects": len(pairs), "index": k, "colour": colour,
                         "shape": shape, "colour_ok": bool(blobs),
                         "x": float(np.nonzero(mask)[1].mean()) if blobs else np.nan,
                         "extra": len(found) - sum(1 for c, _ in found if c in dict(pairs))})
            crops.append(isolate(image, mask))
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float()
    predicted = [SHAPES[j] for j in classifier.shape_probs(x).argmax(-1).tolist()]
    table = pd.DataFrame(rows)
    table["predicted"] = predicted
    table["shape_ok"] = table["colour_ok"] & (table["predicted"] == table["shape"])
    return table


def per_sample(table: pd.DataFrame) -> pd.DataFrame:
    """One row per sample of :func:`judge`'s table: n objects, all_colour, order_ok, exact."""
    out = table.groupby("sample").agg(
        prompt=("prompt", "first"), n=("n_objects", "first"), all_colour=("colour_ok", "all"),
        all_ok=("shape_ok", "all"), x0=("x", "first"), x1=("x", "last"), extra=("extra", "first"))
    out["order_ok"] = out.all_colour & ((out.n == 1) | (out.x0 < out.x1))
    out["exact"] = out.all_ok & out.order_ok & (out.extra == 0)
    return out


def rates(table: pd.DataFrame) -> dict[str, float]:
    """Fractions from :func:`judge`'s table: colour and shape per object; both present, order, exact per sample."""
    samples = per_sample(table)
    two = samples[samples.n == 2]
    return {
        "samples": int(len(samples)),
        "objects": int(len(table)),
        "colour": float(table.colour_ok.mean()),
        "shape": float(table.shape_ok.mean()),
        "both_present": float(two.all_colour.mean()) if len(two) else float("nan"),
        "order": float(two.order_ok.mean()) if len(two) else float("nan"),
        "exact": float(samples.exact.mean()),
    }
