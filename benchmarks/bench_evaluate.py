"""Deletion/insertion games: time vs the UNet evaluations they need, and peak memory vs n_points.

(a) ``games_s``: both games for the given maps at one step (``play_games``, target next_latent, SSIM);
(b) ``unet_only_s``: the same number of batched guided UNet evaluations alone, in the same chunks.
Target on CPU with the shapes model: a/b <= 1.3 (ranking, perturbing, stepping and scoring are cheap next to the
UNet). Memory: the peak RSS growth of a fresh process playing both games for one map at n_points 17, 65 and 257
with a fixed batch size (flat: chunks bound what is alive), and once with every point in one batch for contrast.

    python benchmarks/bench_evaluate.py [--model models/shapes-sd] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import torch
from common import environment, median_time, report  # benchmarks/common.py

from diffexplain.metrics.games import play_games
from diffexplain.models import DiffusionModel, tiny_model
from diffexplain.models.outcomes import Outcome
from diffexplain.schedules import Uniform
from diffexplain.similarity import SSIM

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a red circle and a blue square"



def setup(model_path: str, steps: int, step_index: int):
    model = tiny_model() if model_path == "tiny" else DiffusionModel.from_pretrained(model_path, scheduler="dpm_solver")
    traj = model.generate(PROMPT, 0, Uniform(steps))
    return model, traj, Outcome(model, traj, step_index, "next_latent")


def random_maps(n: int, shape) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {f"map{k}": torch.rand(shape, generator=g) for k in range(n)}


def n_evaluations(n_maps: int, n_points: int) -> int:
    """Unique latents of both games: inner points per map and game + z_t, the substrate, the blurred start."""
    return n_maps * 2 * (n_points - 2) + 3


def timing(model, traj, outcome, i: int, n_maps: int, n_points: int, batch_size: int, repeats: int) -> dict:
    maps = random_maps(n_maps, traj.latents.shape[-2:])
    n = n_evaluations(n_maps, n_points)
    latents = traj.latents[i: i + 1].expand(batch_size, -1, -1, -1).contiguous()

    def games():
        play_games(outcome, SSIM(), maps, n_points=n_points, batch_size=batch_size)

    def unet_only():
        with torch.no_grad():
            for start in range(0, n, batch_size):
                model.unet_output(latents[: min(batch_size, n - start)], traj.timesteps[i], traj.cond)

    games_s, unet_s = median_time(games, repeats), median_time(unet_only, repeats)
    return {"n_maps": n_maps, "n_points": n_points, "unet_evaluations": n, "games_s": round(games_s, 4),
            "unet_only_s": round(unet_s, 4), "overhead_ratio": round(games_s / unet_s, 4)}


def status_kib(key: str) -> int:
    return int(re.search(rf"{key}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def memory_probe(args) -> None:
    """In a fresh process: peak RSS growth (MiB) while playing both games for one map, printed as JSON.

    The kernel's peak (VmHWM) is reset just before the games (Linux: ``/proc/self/clear_refs``), so loading the
    model and sampling the trajectory do not mask what the games use."""
    model, traj, outcome = setup(args.model, args.steps, args.step_index)
    outcome.reference()
    Path("/proc/self/clear_refs").write_text("5")
    before = status_kib("VmRSS")
    play_games(outcome, SSIM(), random_maps(1, traj.latents.shape[-2:]), n_points=args.probe_points,
               batch_size=args.probe_batch)
    print(json.dumps({"peak_rss_growth_mib": round((status_kib("VmHWM") - before) / 1024, 1)}))


def probe(args, n_points: int, batch_size: int) -> float:
    cmd = [sys.executable, __file__, "--model", args.model, "--steps", str(args.steps), "--step-index",
           str(args.step_index), "--probe-points", str(n_points), "--probe-batch", str(batch_size)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_rss_growth_mib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "shapes-sd"), help="pipeline dir, or 'tiny'")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--memory-batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--step-index", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "evaluate.json"))
    parser.add_argument("--probe-points", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--probe-batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe_points:
        return memory_probe(args)

    model, traj, outcome = setup(args.model, args.steps, args.step_index)
    i = args.step_index
    runs = [timing(model, traj, outcome, i, n_maps, n_points, args.batch_size, args.repeats)
            for n_maps, n_points in [(1, 17), (2, 17), (2, 65)]]
    h, w = traj.latents.shape[-2:]
    points = [p for p in (17, 65, 257) if p <= h * w + 1]
    memory = {str(p): probe(args, p, args.memory_batch_size) for p in points}
    unchunked = n_evaluations(1, points[-1])
    one_batch = f"n_points_{points[-1]}_in_one_batch_of_{unchunked}"
    result = {
        "timing": runs,
        "overhead_ratio": runs[0]["overhead_ratio"],
        "peak_rss_growth_mib": {"batch_size": args.memory_batch_size, "by_n_points": memory,
                                one_batch: probe(args, points[-1], unchunked)},
        "targets": {"overhead_ratio_max": 1.3, "memory": "flat in n_points at a fixed batch size"},
        "setup": {"model": args.model, "batch_size": args.batch_size, "steps": args.steps, "step_index": i,
                  "target": outcome.target, "similarity": "ssim", "substrate": "zeros",
                  "repeats": args.repeats, **environment(model)},
    }
    report(result, args.out)


if __name__ == "__main__":
    main()
