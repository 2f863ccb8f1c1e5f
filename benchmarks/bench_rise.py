"""DF-RISE speed: batched and streamed vs the UNet alone vs the authors' one-mask-per-call loop.

(a) ``rise_s``: DF-RISE with N masks at one step; (b) ``unet_only_s``: the same number of batched guided UNet
evaluations alone; (c) ``reference_loop_s``: one mask per UNet call, as the authors' code does, keeping the scores and
combining them at the end with the map's estimator (default ``centred``: Σ (S_k − S̄)·M_k / (N·p)), so it must
produce the same map (``maps_allclose``). Targets on CPU with the shapes model: a/b <= 1.15 (masking, stepping and
scoring are cheap next to the UNet) and c/a >= 10 (batching pays).

    python benchmarks/bench_rise.py [--model models/shapes-sd] [--n-masks 256] [--batch-size 128] [--estimator centred]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import environment, median_time, report  # benchmarks/common.py

from diffexplain.explainers import RISE
from diffexplain.models import DiffusionModel, tiny_model
from diffexplain.schedules import Uniform
from diffexplain.similarity import SSIM

ROOT = Path(__file__).resolve().parents[1]


def reference_loop(rise: RISE, traj, i: int) -> torch.Tensor:
    """The authors' loop: draw the same masks, but one guided UNet call (and one score) per mask; the scores are kept
    and combined at the end by the explainer's ``estimator`` (written out here, independently of ``rise._Sums``)."""
    _, h, w = traj.latents.shape[1:]
    masks = torch.cat([rise.sample_masks(min(rise.batch_size, rise.n_masks - s), h, w, g)
                       for g in [rise.generator(traj, i)] for s in range(0, rise.n_masks, rise.batch_size)])
    outcome = rise.outcome(traj, i)
    z, reference = traj.latents[i: i + 1], outcome.reference().float()
    with torch.no_grad():
        scores = torch.cat([rise.scores(outcome(z * m[None]).float(), reference, m[None]) for m in masks])
    scores = scores[:, 0].expand(len(masks), h, w)  # S_k: [N, h, w] (a scalar score is the same at every pixel)
    masks = masks[:, 0]  # M_k: [N, h, w]
    if rise.estimator == "rise":  # Σ S_k · M_k
        weights = scores
    elif rise.estimator == "centred":  # Σ (S_k − S̄) · M_k
        weights = scores - scores.mean(0)
    else:  # coverage: Σ (S_k − â − b̂ · c_k) · M_k, (â, b̂) the least-squares line of S_k on c_k = mean(M_k)
        cover = masks.mean(dim=(1, 2))[:, None, None].expand_as(scores)
        dc = cover - cover.mean(0)
        var = (dc ** 2).mean(0)
        slope = torch.where(var > 0, (dc * (scores - scores.mean(0))).mean(0) / var.clamp_min(1e-30), 0.0)
        weights = scores - (scores.mean(0) - slope * cover.mean(0)) - slope * cover
    return (weights * masks).sum(0) / (rise.n_masks * rise.p)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "shapes-sd"), help="pipeline dir, or 'tiny'")
    parser.add_argument("--n-masks", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--step-index", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--estimator", default="centred", choices=["centred", "rise", "coverage"])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "rise.json"))
    args = parser.parse_args()

    model = tiny_model() if args.model == "tiny" else DiffusionModel.from_pretrained(args.model, scheduler="dpm_solver")
    traj = model.generate("a red circle and a blue square", 0, Uniform(args.steps))
    i = args.step_index
    rise = RISE(model, SSIM(), n_masks=args.n_masks, batch_size=args.batch_size, estimator=args.estimator)
    latents = traj.latents[i: i + 1].expand(args.batch_size, -1, -1, -1).contiguous()

    def unet_only():
        with torch.no_grad():
            for start in range(0, args.n_masks, args.batch_size):
                model.unet_output(latents[: min(args.batch_size, args.n_masks - start)], traj.timesteps[i], traj.cond)

    rise_s = median_time(lambda: rise.explain_step(traj, i), args.repeats)
    unet_s = median_time(unet_only, args.repeats)
    ref_start = time.perf_counter()
    ref_map = reference_loop(rise, traj, i)
    ref_s = time.perf_counter() - ref_start
    batched_map = rise.explain_step(traj, i)
    result = {
        "rise_s": round(rise_s, 4), "unet_only_s": round(unet_s, 4), "reference_loop_s": round(ref_s, 4),
        "overhead_ratio": round(rise_s / unet_s, 4), "speedup_vs_reference": round(ref_s / rise_s, 2),
        "maps_allclose": bool(torch.allclose(ref_map, batched_map, atol=1e-4)),
        "max_abs_diff": float((ref_map - batched_map).abs().max()),
        "targets": {"overhead_ratio_max": 1.15, "speedup_vs_reference_min": 10},
        "setup": {"model": args.model, "n_masks": args.n_masks, "batch_size": args.batch_size,
                  "steps": args.steps, "step_index": i, "target": rise.target, "estimator": rise.estimator,
                  "similarity": "ssim",
                  "repeats": args.repeats, **environment(model)},
    }
    report(result, args.out)


if __name__ == "__main__":
    main()
