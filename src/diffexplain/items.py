"""Units of work and where they come from: prompt items (a prompt and a seed) for the diffusion pipelines.

Every item has an ``item_id``: stable across runs, safe in file names and npz keys; results, maps, images and resume
shards are keyed by it. This module is the bottom layer both ``pipelines/`` and ``runner/`` import.
"""

from __future__ import annotations

import hashlib
import json
import re
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
    return [PromptItem(make_prompt_id(p, s, negative_prompt), p, int(s), negative_prompt) for p in prompts for s in seeds]
