"""What a saved item was computed with: the fingerprint of the config that affects results.

Paths, logging, the runner (devices), ``resume`` itself and the choice of items (prompts, seeds, how many) do not
change an item's results — items are matched by id — so they are left out; everything else is in.
"""

from __future__ import annotations

import hashlib
import json

RESUME = ("auto", "overwrite")
NOT_RESULTS = {"paths", "logger", "runner", "hydra", "resume", "sweep_dir"}
NOT_RESULTS_DATA = {"prompts", "prompt_file", "num_prompts", "num_objects", "offset", "seeds", "batch_size", "per_class",
                    "classes", "root"}
NOT_RESULTS_OUTPUT = {"figures"}


def results_config(config: dict) -> dict:
    """The part of a resolved config (plain dict) that determines each item's results."""
    out = {k: v for k, v in config.items() if k not in NOT_RESULTS}
    if isinstance(out.get("data"), dict):
        out["data"] = {k: v for k, v in out["data"].items() if k not in NOT_RESULTS_DATA}
    if isinstance(out.get("output"), dict):
        out["output"] = {k: v for k, v in out["output"].items() if k not in NOT_RESULTS_OUTPUT}
    return out


def fingerprint(config: dict) -> str:
    """A short stable hash of :func:`results_config`."""
    canonical = json.dumps(results_config(config), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _flatten(d, prefix: str = "") -> dict:
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out


def differing_keys(old: dict, new: dict) -> list[str]:
    """Dotted keys whose values differ between two configs' result-determining parts."""
    a, b = _flatten(results_config(old)), _flatten(results_config(new))
    return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))
