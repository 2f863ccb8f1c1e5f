"""Find the prompted objects in generated (blurry, noisy) Shapes images by colour."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from diffexplain.errors import UserError
from diffexplain.world.scenes import COLOURS, parse_prompt

EIGHT_CONNECTED = np.ones((3, 3), bool)


def segment(image: np.ndarray, prompt: str) -> dict[str, np.ndarray]:
    """Bool HxW mask of each content word's object: the largest blob of the object's colour.

    Each pixel takes the nearest (RGB) of black and the prompt's colours, so dim pixels (roughly below
    half brightness) are background. A colour word and its shape word share one mask; an object with
    no pixels gets an all-False mask.
    """
    pairs = parse_prompt(prompt)
    labels = _nearest_colour(image, [colour for colour, _ in pairs])
    masks = {}
    for i, (colour, shape) in enumerate(pairs, start=1):
        blobs, n = ndimage.label(labels == i, EIGHT_CONNECTED)
        sizes = np.bincount(blobs.ravel(), minlength=2)[1:]
        masks[colour] = masks[shape] = blobs == 1 + int(np.argmax(sizes)) if n else np.zeros(labels.shape, bool)
    return masks


def detect_objects(image: np.ndarray, min_pixels: int = 10) -> list[tuple[str, np.ndarray]]:
    """Every blob of any of the four colours with at least ``min_pixels`` pixels, left to right."""
    labels = _nearest_colour(image, list(COLOURS))
    found = []
    for i, colour in enumerate(COLOURS, start=1):
        blobs, n = ndimage.label(labels == i, EIGHT_CONNECTED)
        found += [(colour, blobs == j) for j in range(1, n + 1) if (blobs == j).sum() >= min_pixels]
    return sorted(found, key=lambda item: np.nonzero(item[1])[1].mean())


def _nearest_colour(image: np.ndarray, colours: list[str]) -> np.ndarray:
    """Per pixel, 0 if black is nearest, else 1 + index of the nearest of ``colours``."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise UserError("image", image.shape, "an HxWx3 RGB array (float in [0, 1] or uint8)")
    rgb = image / 255.0 if image.dtype == np.uint8 else image.astype(np.float64)
    palette = np.array([(0.0, 0.0, 0.0), *(COLOURS[c] for c in colours)])
    return np.argmin(((rgb[:, :, None, :] - palette) ** 2).sum(-1), axis=-1)
