"""The Shapes world: 32x32 RGB scenes of one or two coloured shapes on black, with exact masks and prompts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import permutations, product

import numpy as np
from scipy.ndimage import binary_dilation

from diffexplain.errors import UserError

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
}
SHAPES = ("circle", "square", "triangle")
CONNECTIVES = ("a", "and")

GAP = 2  # background pixels required between two objects
MIN_DX = 4.0  # centroid x distance (px) that makes "left object" unambiguous
MAX_TRIES = 1000
GRAMMAR = (
    "'a <colour> <shape>' or 'a <colour> <shape> and a <colour> <shape>' with two different colours "
    f"and two different shapes; colours: {', '.join(COLOURS)}; shapes: {', '.join(SHAPES)}"
)


@dataclass(frozen=True)
class SceneObject:
    """One drawn object: its colour word, shape word and exact bool HxW mask."""

    colour: str
    shape: str
    mask: np.ndarray


@dataclass(frozen=True)
class Scene:
    """A float32 HxWx3 image in [0, 1] on black, its objects (left to right) and its prompt."""

    image: np.ndarray
    objects: tuple[SceneObject, ...]
    prompt: str


def draw_mask(shape: str, cx: float, cy: float, size: int, canvas: int = 32) -> np.ndarray:
    """Bool mask of the pixels whose centres lie inside ``shape`` centred at (cx, cy) with extent ``size``.

    circle: disk of diameter ``size``; square: axis-aligned ``size`` x ``size``;
    triangle: upright isoceles, base ``size`` at the bottom, height ``size``.
    """
    ys, xs = np.mgrid[:canvas, :canvas] + 0.5
    dx, dy, half = xs - cx, ys - cy, size / 2
    if shape == "circle":
        return dx**2 + dy**2 <= half**2
    if shape == "square":
        return (np.abs(dx) < half) & (np.abs(dy) < half)
    if shape == "triangle":
        depth = dy + half  # distance below the apex
        return (depth >= 0) & (depth < size) & (np.abs(dx) <= depth / 2)
    raise UserError("shape", shape, f"one of {', '.join(SHAPES)}")


def prompt_for(objects: Iterable[SceneObject | tuple[str, str]]) -> str:
    """The prompt naming ``objects`` in order, e.g. "a blue square and a yellow triangle"."""
    pairs = [(o.colour, o.shape) if isinstance(o, SceneObject) else tuple(o) for o in objects]
    prompt = " and ".join(f"a {colour} {shape}" for colour, shape in pairs)
    parse_prompt(prompt)
    return prompt


def parse_prompt(prompt: str) -> list[tuple[str, str]]:
    """The (colour, shape) pairs of a grammar prompt, left object first; :class:`UserError` otherwise."""
    if not isinstance(prompt, str):
        raise UserError("prompt", prompt, GRAMMAR)
    pairs = []
    for phrase in prompt.split(" and "):
        words = phrase.split(" ")
        if len(words) != 3 or words[0] != "a" or words[1] not in COLOURS or words[2] not in SHAPES:
            raise UserError("prompt", prompt, GRAMMAR)
        pairs.append((words[1], words[2]))
    colours, shapes = zip(*pairs)
    if len(pairs) > 2 or len(set(colours)) < len(pairs) or len(set(shapes)) < len(pairs):
        raise UserError("prompt", prompt, GRAMMAR)
    return pairs


def all_prompts(n_objects: int | None = None) -> list[str]:
    """Every prompt of the grammar (12 single-object, then 72 two-object), in a fixed order."""
    if n_objects not in (None, 1, 2):
        raise UserError("n_objects", n_objects, "1, 2 or None (both)")
    singles = [f"a {c} {s}" for c, s in product(COLOURS, SHAPES)]
    pairs = [
        f"a {c1} {s1} and a {c2} {s2}"
        for (c1, c2), (s1, s2) in product(permutations(COLOURS, 2), permutations(SHAPES, 2))
    ]
    return {1: singles, 2: pairs, None: singles + pairs}[n_objects]


def word_roles(prompt: str) -> dict[str, str]:
    """Role of each word of ``prompt``: "colour", "shape" or "connective"."""
    parse_prompt(prompt)
    return {w: "colour" if w in COLOURS else "shape" if w in SHAPES else "connective" for w in prompt.split(" ")}


def render(
    pairs: Sequence[tuple[str, str]],
    rng: np.random.Generator,
    size: int = 32,
    min_size: int = 8,
    max_size: int = 14,
) -> Scene:
    """Draw the (colour, shape) ``pairs`` at random sizes and positions, ordered left to right as given."""
    prompt = prompt_for(pairs)
    if not 1 <= min_size <= max_size <= size:
        raise UserError("min_size/max_size", (min_size, max_size), f"1 <= min_size <= max_size <= {size}")
    for _ in range(MAX_TRIES):
        masks = [_random_mask(shape, rng, size, min_size, max_size) for _, shape in pairs]
        if len(masks) == 1 or _separated(*masks):
            break
    else:
        raise UserError("max_size", max_size, f"small enough to fit {len(pairs)} separated objects in {size}x{size}")
    if len(masks) == 2 and _centroid_x(masks[0]) > _centroid_x(masks[1]):
        masks = [np.fliplr(m) for m in masks]  # mirror the scene so the first pair is on the left
    image = np.zeros((size, size, 3), np.float32)
    for (colour, _), mask in zip(pairs, masks):
        image[mask] = COLOURS[colour]
    objects = tuple(SceneObject(c, s, m) for (c, s), m in zip(pairs, masks))
    return Scene(image, objects, prompt)


def sample_scene(
    rng: np.random.Generator,
    n_objects: int | None = None,
    size: int = 32,
    min_size: int = 8,
    max_size: int = 14,
) -> Scene:
    """A random scene of ``n_objects`` (1 or 2; None: either, 50/50) with distinct colours and shapes."""
    if n_objects not in (None, 1, 2):
        raise UserError("n_objects", n_objects, "1, 2 or None (either, 50/50)")
    n = int(rng.integers(1, 3)) if n_objects is None else n_objects
    colours = rng.choice(list(COLOURS), n, replace=False)
    shapes = rng.choice(SHAPES, n, replace=False)
    return render([(str(c), str(s)) for c, s in zip(colours, shapes)], rng, size, min_size, max_size)


def _random_mask(shape: str, rng: np.random.Generator, canvas: int, min_size: int, max_size: int) -> np.ndarray:
    """A mask of ``shape`` with random size, its bounding box on whole pixels and fully inside the canvas."""
    s = int(rng.integers(min_size, max_size + 1))
    x0, y0 = rng.integers(0, canvas - s + 1, size=2)
    return draw_mask(shape, x0 + s / 2, y0 + s / 2, s, canvas)


def _separated(a: np.ndarray, b: np.ndarray) -> bool:
    """True if at least ``GAP`` background pixels separate a and b and their centroids are ``MIN_DX`` apart in x."""
    near_a = binary_dilation(a, np.ones((2 * GAP + 1, 2 * GAP + 1), bool))
    return not (near_a & b).any() and abs(_centroid_x(a) - _centroid_x(b)) >= MIN_DX


def _centroid_x(mask: np.ndarray) -> float:
    """Mean x (column) of the mask's pixels."""
    return float(np.nonzero(mask)[1].mean())
