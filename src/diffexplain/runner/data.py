"""Prompt items and the DataModule that hands them to ``trainer.predict``."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import numpy as np
from torch.utils.data import DataLoader

from diffexplain.errors import check


@dataclass
class PromptItem:
    """One unit of work: a prompt and a seed. ``prompt_id`` is stable and safe in file names and npz keys."""

    prompt_id: str
    prompt: str
    seed: int
    negative_prompt: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def make_prompt_id(prompt: str, seed: int, negative_prompt: str = "") -> str:
    """``a_red_circle-s0-1f2e3d`` — a readable slug, the seed, and a short hash of (prompt, seed, negative)."""
    slug = re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")[:48] or "prompt"
    digest = hashlib.sha1(json.dumps([prompt, int(seed), negative_prompt]).encode()).hexdigest()[:6]
    return f"{slug}-s{int(seed)}-{digest}"


def shapes_prompts(n: int | None, n_objects: int | None = None, seed: int = 0) -> list[str]:
    """A fixed, seeded mix of the Shapes grammar's prompts with ``n_objects`` objects (None: 1 or 2; all for n=None)."""
    from diffexplain.world import all_prompts

    check(n_objects in (None, 1, 2), "data.num_objects", n_objects, "1, 2 or null (both)")
    prompts = all_prompts(n_objects)
    order = np.random.default_rng(seed).permutation(len(prompts))
    return [prompts[i] for i in order[:n]]


def _collate(batch: list[PromptItem]) -> list[PromptItem]:
    return batch


def read_prompt_file(path: str) -> list[str]:
    """Prompts from a text file (one per line) or a JSON list / COCO captions file (``annotations[].caption``)."""
    p = Path(path)
    check(p.is_file(), "data.prompt_file", path, "an existing .txt (one prompt per line) or .json file")
    if p.suffix == ".json":
        data = json.loads(p.read_text())
        if isinstance(data, dict):
            data = [a["caption"] for a in data.get("annotations", [])]
        prompts = [str(x).strip() for x in data]
    else:
        prompts = [line.strip() for line in p.read_text().splitlines()]
    prompts = [x for x in prompts if x]
    check(bool(prompts), "data.prompt_file", path, "a file with at least one prompt")
    return prompts


class PromptDataModule(L.LightningDataModule):
    """Prompts × seeds. Prompts come from ``prompts`` (CLI list), else ``prompt_file``, else the Shapes grammar
    (``num_objects`` 1 or 2 picks one- or two-object prompts)."""

    def __init__(self, prompts: list[str] | None = None, prompt_file: str | None = None, num_prompts: int | None = 4,
                 seeds: list[int] = (0,), negative_prompt: str = "", batch_size: int = 1,
                 num_objects: int | None = None):
        super().__init__()
        check(num_prompts is None or num_prompts >= 1, "data.num_prompts", num_prompts, "an integer >= 1 or null (all)")
        check(batch_size >= 1, "data.batch_size", batch_size, "an integer >= 1")
        check(len(seeds) >= 1, "data.seeds", seeds, "a non-empty list of integers")
        if prompts is not None:
            check(isinstance(prompts, Sequence) and not isinstance(prompts, str) and all(isinstance(p, str) and p.strip() for p in prompts)
                  and len(prompts) > 0, "data.prompts", prompts, "a non-empty list of strings, e.g. '[a red circle]'")
            prompts = [p.strip() for p in prompts]
        elif prompt_file is not None:
            prompts = read_prompt_file(prompt_file)[:num_prompts]
        else:
            prompts = shapes_prompts(num_prompts, num_objects)
        self.batch_size = batch_size
        self.items = [PromptItem(make_prompt_id(p, s, negative_prompt), p, int(s), negative_prompt)
                      for p in prompts for s in seeds]
        self.todo = list(self.items)

    def skip(self, done_ids: set[str]) -> None:
        """Leave out items already computed (resuming an interrupted run)."""
        self.todo = [it for it in self.items if it.prompt_id not in done_ids]

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.todo, batch_size=self.batch_size, shuffle=False, collate_fn=_collate)
