"""Explaining transformers costs what it costs on the UNet: DF-RISE and attention capture per family.

Per family (the tiny ``sd3``, ``flux``, ``pixart`` pipelines and the tiny UNet ``sd`` for reference, at a latent of
``--resolution`` / 2 a side, 32×32 by default):

- ``rise_overhead``: DF-RISE with N masks at one step over the same number of batched guided denoiser evaluations
  alone (target <= 1.15: masking, stepping and scoring are cheap next to the denoiser);
- ``capture_overhead``: generation with the cross-attention capture (joint attention on SD3/Flux, every layer) over
  plain generation (target <= 1.3).

    python benchmarks/bench_transformers.py [--resolution 64] [--n-masks 128] [--batch-size 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import environment, median_time, report  # benchmarks/common.py

from diffexplain.explainers import RISE
from diffexplain.models import tiny_model
from diffexplain.schedules import Uniform
from diffexplain.similarity import SSIM

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a red circle and a blue square"
FAMILIES = {"sd3": "sd3", "flux": "flux", "pixart": "pixart", "unet": "sd"}  # family → tiny variant
TARGETS = {"rise_overhead": 1.15, "capture_overhead": 1.3}


def measure(variant: str, args) -> dict:
    model = tiny_model(variant=variant, resolution=args.resolution)
    schedule = Uniform(args.steps)
    traj = model.generate(PROMPT, 0, schedule)
    i = args.steps // 2
    rise = RISE(model, SSIM(), n_masks=args.n_masks, batch_size=args.batch_size)
    latents = traj.latents[i: i + 1].expand(args.batch_size, -1, -1, -1).contiguous()

    def denoiser_only():
        with torch.no_grad():
            for start in range(0, args.n_masks, args.batch_size):
                model.unet_output(latents[: min(args.batch_size, args.n_masks - start)], traj.timesteps[i], traj.cond)

    def recorded():
        with model.attention_recorder(model.latent_shape[1:], rows=traj.cond.rows) as rec:
            model.generate(PROMPT, 0, schedule)
        assert len(rec.calls) == args.steps and rec.calls[0].layers

    rise_s = median_time(lambda: rise.explain_step(traj, i), args.repeats)
    denoiser_s = median_time(denoiser_only, args.repeats)
    plain_s = median_time(lambda: model.generate(PROMPT, 0, schedule), args.repeats)
    recorded_s = median_time(recorded, args.repeats)
    return {"denoiser": type(model.denoiser).__name__, "rise_s": round(rise_s, 4),
            "denoiser_only_s": round(denoiser_s, 4), "rise_overhead": round(rise_s / denoiser_s, 4),
            "plain_generate_s": round(plain_s, 4), "recorded_generate_s": round(recorded_s, 4),
            "capture_overhead": round(recorded_s / plain_s, 4), **environment(model)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=64, help="image side; the latent is half of it")
    parser.add_argument("--n-masks", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "transformers.json"))
    args = parser.parse_args()
    families = {family: measure(variant, args) for family, variant in FAMILIES.items()}
    meets = {f: all(r[k] <= t for k, t in TARGETS.items()) for f, r in families.items()}
    report({"families": families, "targets_max": TARGETS, "meets_targets": meets,
            "setup": {"resolution": args.resolution, "n_masks": args.n_masks, "batch_size": args.batch_size,
                      "steps": args.steps, "repeats": args.repeats}}, args.out)


if __name__ == "__main__":
    main()
