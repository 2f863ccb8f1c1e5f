"""Loading diffusers pipelines: the same call for a hub id on a user's machine and a local directory here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from diffusers import DiffusionPipeline

from diffexplain.config import options
from diffexplain.errors import UserError, check

DTYPES = {name: getattr(torch, name) for name in options.DTYPES}


def torch_dtype(name: str) -> torch.dtype:
    check(name in DTYPES, "model.dtype", name, f"one of {list(DTYPES)}")
    return DTYPES[name]


def absent_components(directory: str) -> dict[str, None]:
    """``{name: None}`` for the components a saved pipeline was built without (``[null, null]`` in its
    model_index.json, e.g. SD3 without its T5 encoder): diffusers saves them so but only loads them when told."""
    index = Path(directory) / "model_index.json"
    if not index.is_file():
        return {}
    entries = json.loads(index.read_text())
    return {name: None for name, value in entries.items()
            if not name.startswith("_") and isinstance(value, list) and value == [None, None]}


def load_pipeline(path_or_hub_id: str, dtype: str = "float32", device: str | torch.device | None = None, **kwargs):
    """``DiffusionPipeline.from_pretrained`` for a local directory or a hub id, in ``dtype``, on ``device``.

    Extra keyword arguments go to ``from_pretrained`` (e.g. ``safety_checker=None`` for SD 1.x).
    """
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()  # loading bars for a handful of components are noise
    transformers.utils.logging.disable_progress_bar()
    torch_dtype_ = torch_dtype(dtype)
    local = os.path.isdir(path_or_hub_id)
    if local:
        kwargs = {**absent_components(path_or_hub_id), **kwargs}
    try:
        pipe = DiffusionPipeline.from_pretrained(path_or_hub_id, dtype=torch_dtype_, **kwargs)
    except (OSError, ValueError) as e:  # missing directory, unknown or malformed hub id
        where = "directory" if local else "hub id (needs internet, or a copy in the Hugging Face cache)"
        raise UserError("model.path", path_or_hub_id,
                        f"a loadable diffusers pipeline {where}; loading failed: {str(e).splitlines()[0]}") from e
    pipe.set_progress_bar_config(disable=True)
    if device is not None:
        pipe.to(device)
    return pipe
