"""What a saved item was computed with: the fingerprint of the config that affects results.

Paths, logging, the runner (devices), ``resume`` itself and the choice of items (prompts, seeds, how many) do not
change an item's results — items are matched by id — so they are left out, and so are the config nodes the job's
pipeline says it does not use (:meth:`Pipeline.unused <diffexplain.pipelines.base.Pipeline.unused>`: e.g. the
``similarity`` of DF-CAM on its default target, everything of the explainer for ``pipeline=generate``), together with
their copies in the ``pipeline`` node; everything else is in. Two jobs with the same fingerprint and items have the
same results: a resume continues across them, and a sweep computes them once (the later job reuses the earlier one's
files).
"""

from __future__ import annotations

import hashlib
import json

from hydra.utils import get_class

from diffexplain.config.options import RESUME  # noqa: F401  (the writer checks resume= against it)
from diffexplain.pipelines.base import Pipeline

NOT_RESULTS = {"paths", "logger", "runner", "hydra", "resume", "sweep_dir"}
NOT_RESULTS_DATA = {"prompts", "prompt_file", "num_prompts", "num_objects", "offset", "seeds", "batch_size",
                    "per_class", "classes", "root"}
NOT_RESULTS_OUTPUT = {"figures"}


def unused(config: dict) -> list[str]:
    """The top-level config nodes the job's pipeline does not use (:meth:`Pipeline.unused`), sorted."""
    try:
        cls = get_class((config.get("pipeline") or {})["_target_"])
    except Exception:
        return []
    return sorted(cls.unused(config)) if isinstance(cls, type) and issubclass(cls, Pipeline) else []


def results_config(config: dict) -> dict:
    """The part of a resolved config (plain dict) that determines each item's results."""
    config = config or {}
    skip = set(unused(config))
    out = {k: v for k, v in config.items() if k not in NOT_RESULTS | skip}
    if isinstance(out.get("pipeline"), dict):
        out["pipeline"] = {k: v for k, v in out["pipeline"].items() if k not in skip}
    if isinstance(out.get("data"), dict):
        out["data"] = {k: v for k, v in out["data"].items() if k not in NOT_RESULTS_DATA}
    if isinstance(out.get("output"), dict):
        out["output"] = {k: v for k, v in out["output"].items() if k not in NOT_RESULTS_OUTPUT}
    return out


def fingerprint(config: dict) -> str:
    """A short stable hash of :func:`results_config`."""
    canonical = json.dumps(results_config(config), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def flatten(d, prefix: str = "") -> dict:
    """Dotted keys of a nested config."""
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out


def differing_keys(old: dict, new: dict) -> list[str]:
    """Dotted keys whose values differ between two configs' result-determining parts."""
    a, b = flatten(results_config(old)), flatten(results_config(new))
    return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))
