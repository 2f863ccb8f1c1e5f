"""What every benchmark shares: a median timer, the environment it ran in, and writing its JSON."""

from __future__ import annotations

import json
import platform
import statistics
import time

import torch

from diffexplain.io import write_json


def median_time(fn, repeats: int) -> float:
    """Median wall time of ``repeats`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def environment(model) -> dict:
    """The model's latent shape and device, and the machine (timings compare only within one of these)."""
    return {"latent_shape": list(model.latent_shape), "device": str(model.device),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine()}


def report(result: dict, path) -> None:
    write_json(path, result)
    print(json.dumps(result, indent=2))
