"""Units of work and where they come from: prompt items (a prompt and a seed) for the diffusion pipelines.

Every item has an ``item_id``: stable across runs, safe in file names and npz keys; results, maps, images and resume
shards are keyed by it. This module is the bottom layer both ``pipelines/`` and ``runner/`` import.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from diffexplain.errors import UserError, check


@dataclass
class PromptItem:
    """One unit of work: a prompt and a seed. ``prompt_id`` is stable and safe in file names and npz keys."""

    prompt_id: str
    prompt: str
    seed: int
    negative_prompt: str = ""

    @property
    def item_id(self) -> str:
        return self.prompt_id

    def as_dict(self) -> dict:
        return asdict(self)


def make_prompt_id(prompt: str, seed: int, negative_prompt: str = "") -> str:
    """``a_red_circle-s0-1f2e3d`` — a readable slug, the seed, and a short hash of (prompt, seed, negative)."""
    slug = re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")[:48] or "prompt"
    digest = hashlib.sha1(json.dumps([prompt, int(seed), negative_prompt]).encode()).hexdigest()[:6]
    return f"{slug}-s{int(seed)}-{digest}"


def shapes_prompts(n: int | None, n_objects: int | None = None, offset: int = 0, seed: int = 0) -> list[str]:
    """``n`` prompts of a fixed, seeded mix of the Shapes grammar's prompts with ``n_objects`` objects (None: 1 or 2;
    all for n=None), from position ``offset`` of the mix (disjoint sets: a development set and a held-out one)."""
    from diffexplain.world.scenes import all_prompts

    check(n_objects in (None, 1, 2), "data.num_objects", n_objects, "1, 2 or null (both)")
    prompts = all_prompts(n_objects)
    check(isinstance(offset, int) and 0 <= offset < len(prompts), "data.offset", offset,
          f"an integer in [0, {len(prompts) - 1}] (the mix has {len(prompts)} prompts)")
    order = np.random.default_rng(seed).permutation(len(prompts))[offset:]
    return [prompts[i] for i in order[:n]]


def read_prompt_file(path: str) -> list[str]:
    """Prompts from a text file (one per line) or a JSON list / COCO captions file (``annotations[].caption``)."""
    p = Path(path)
    check(p.is_file(), "data.prompt_file", path, "an existing .txt (one prompt per line) or .json file")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError("data.prompt_file", path, f"a readable UTF-8 text or JSON file ({type(e).__name__})") from e
    if p.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError("data.prompt_file", path, f"valid JSON; line {e.lineno}, column {e.colno}: {e.msg}") from e
        if isinstance(data, dict):
            annotations = data.get("annotations")
            check(isinstance(annotations, list) and all(isinstance(a, dict) and "caption" in a for a in annotations),
                  "data.prompt_file", path, "a JSON list of prompts or a COCO captions file (annotations[].caption)")
            data = [a["caption"] for a in annotations]
        check(isinstance(data, list), "data.prompt_file", path,
              "a JSON list of prompts or a COCO captions file (annotations[].caption)")
        prompts = [str(x).strip() for x in data]
    else:
        prompts = [line.strip() for line in text.splitlines()]
    prompts = [x for x in prompts if x]
    check(bool(prompts), "data.prompt_file", path, "a file with at least one prompt")
    return prompts


def prompt_items(prompts: list[str] | None = None, prompt_file: str | None = None, num_prompts: int | None = 4,
                 seeds=(0,), negative_prompt: str = "", num_objects: int | None = None, offset: int = 0
                 ) -> list[PromptItem]:
    """Prompts × seeds: from ``prompts`` (a CLI list), else ``prompt_file``, else the Shapes grammar."""
    if prompts is not None:
        prompts = [p.strip() for p in prompts]
    elif prompt_file is not None:
        prompts = read_prompt_file(prompt_file)[:num_prompts]
    else:
        prompts = shapes_prompts(num_prompts, num_objects, offset)
    return [PromptItem(make_prompt_id(p, s, negative_prompt), p, int(s), negative_prompt)
            for p in prompts for s in seeds]


# -- labelled images (pipeline=noised_classifier) -----------------------------------------------------
@dataclass
class ImageItem:
    """One labelled image: a file of a class-per-folder tree (``path``) or a rendered single-object Shapes scene
    (``seed``, ``index``). ``label`` is the class name: the folder name, or ``"red circle"`` for Shapes."""

    image_id: str
    label: str
    path: str | None = None
    seed: int | None = None
    index: int | None = None

    @property
    def item_id(self) -> str:
        return self.image_id

    def as_dict(self) -> dict:
        return asdict(self)

    def load(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The image (uint8 HxWx3 RGB) and, for Shapes scenes, the object's bool HxW mask (None for files)."""
        if self.path is not None:
            return read_rgb(self.path), None
        scene = shapes_scene(self.label, self.seed, self.index)
        return (scene.image * 255 + 0.5).astype(np.uint8), scene.objects[0].mask


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:limit] or "x"


def shapes_scene(label: str, seed: int, index: int):
    """The ``index``-th rendered single-object scene of class ``label`` (e.g. "red circle") for data seed ``seed``:
    the same scene on every call."""
    from diffexplain.world.scenes import COLOURS, SHAPES, render

    colour, shape = label.split(" ")
    rng = np.random.default_rng([int(seed), list(COLOURS).index(colour), SHAPES.index(shape), int(index)])
    return render([(colour, shape)], rng)


def shapes_labels() -> list[str]:
    """The Shapes world's 12 single-object classes, in the classifier's order: ``"red circle"``, ``"red square"``..."""
    from itertools import product

    from diffexplain.world.scenes import COLOURS, SHAPES

    return [f"{colour} {shape}" for colour, shape in product(COLOURS, SHAPES)]  # = world.classifier.CLASSES


def shapes_image_items(per_class: int = 8, seed: int = 0, classes: list[str] | None = None) -> list[ImageItem]:
    """``per_class`` rendered scenes of each Shapes class (all 12, or ``classes``), class by class."""
    labels = shapes_labels()
    check(isinstance(per_class, int) and per_class >= 1, "data.per_class", per_class, "an integer >= 1")
    if classes is not None:
        check(isinstance(classes, Sequence) and not isinstance(classes, str) and len(classes) > 0
              and all(c in labels for c in classes), "data.classes", classes,
              "a non-empty list of Shapes classes '<colour> <shape>' (red, green, blue, yellow × circle, square, "
              "triangle), e.g. '[red circle, blue square]', or null (all 12)")
        labels = [c for c in labels if c in classes]
    return [ImageItem(f"{_slug(label)}-s{int(seed)}-{k:03d}", label, seed=int(seed), index=k)
            for label in labels for k in range(per_class)]


def image_extensions() -> set[str]:
    """File extensions PIL can open (lower case, with the dot)."""
    from PIL import Image

    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as uint8 HxWx3 RGB; an unreadable file is a :class:`UserError` naming it."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise UserError("data.root", str(path), f"a readable image file ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else 'cannot decode'})") from e


def image_folder_items(root: str, per_class: int | None = None, classes: list[str] | None = None) -> list[ImageItem]:
    """Images of a class-per-subfolder tree (``root/<class>/**/<image>``), class by class in sorted order, the first
    ``per_class`` files (sorted paths) of each; ``classes`` picks some folders. Every file with an image extension must
    open (its header is read here); a class folder without images, a missing or empty root are errors. The listing is
    cached per process (config validation and the data module ask for the same one)."""
    if classes is not None and isinstance(classes, Sequence) and not isinstance(classes, str):
        classes = tuple(classes)
    return list(_image_folder_items(str(root), per_class, classes))


@functools.lru_cache(maxsize=4)
def _image_folder_items(root: str, per_class: int | None, classes: tuple[str, ...] | None) -> tuple[ImageItem, ...]:
    from PIL import Image

    base = Path(str(root)).expanduser()
    check(base.is_dir(), "data.root", str(root), "an existing directory with one subfolder of images per class")
    folders = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    check(bool(folders), "data.root", str(root), "a directory with one subfolder of images per class (it has none)")
    if classes is not None:
        check(isinstance(classes, tuple) and len(classes) > 0 and all(c in folders for c in classes),
              "data.classes", classes, f"a non-empty list of class folders of {root} (it has {folders[:8]}"
              f"{'...' if len(folders) > 8 else ''}), or null (all)")
        folders = [f for f in folders if f in classes]
    check(per_class is None or (isinstance(per_class, int) and per_class >= 1), "data.per_class", per_class,
          "an integer >= 1 or null (every image)")
    extensions = image_extensions()
    items = []
    for label in folders:
        files = sorted(p for p in (base / label).rglob("*") if p.is_file() and p.suffix.lower() in extensions
                       and not any(part.startswith(".") for part in p.relative_to(base).parts))
        check(bool(files), "data.root", str(root), f"a class folder with images: {label}/ has none "
              f"(extensions {', '.join(sorted(e for e in extensions if e in ('.jpg', '.jpeg', '.png', '.webp')))}...)")
        for path in files[:per_class]:
            try:
                with Image.open(path):
                    pass
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                raise UserError("data.root", str(path), f"a readable image file ({type(e).__name__})") from e
            rel = path.relative_to(base).as_posix()
            digest = hashlib.sha1(rel.encode()).hexdigest()[:6]
            items.append(ImageItem(f"{_slug(label, 24)}-{_slug(path.stem, 24)}-{digest}", label, path=str(path)))
    return tuple(items)
