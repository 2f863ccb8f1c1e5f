"""Cross-attention capture overhead: generation with the recorder vs plain generation (target ratio <= 1.2).

    python benchmarks/bench_cross_attention.py [--model models/shapes-sd] [--steps 20] [--repeats 5]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from common import median_time, report  # benchmarks/common.py

from diffexplain.models import DiffusionModel, tiny_model
from diffexplain.models.attention_capture import CrossAttentionRecorder
from diffexplain.schedules import Uniform

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a red circle and a blue square"



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "shapes-sd"), help="pipeline dir, or 'tiny'")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cross_attention.json"))
    args = parser.parse_args()
    model = tiny_model() if args.model == "tiny" else DiffusionModel.from_pretrained(args.model, scheduler="dpm_solver")
    schedule = Uniform(args.steps)

    def recorded():
        with CrossAttentionRecorder(model.denoiser, model.latent_shape[1:]) as rec:
            model.generate(PROMPT, 0, schedule)
        assert len(rec.calls) == args.steps

    plain_s = median_time(lambda: model.generate(PROMPT, 0, schedule), args.repeats)
    recorded_s = median_time(recorded, args.repeats)
    result = {"plain_generate_s": round(plain_s, 4), "recorded_generate_s": round(recorded_s, 4),
              "overhead_ratio": round(recorded_s / plain_s, 4), "target_ratio_max": 1.2,
              "setup": {"model": args.model, "steps": args.steps, "repeats": args.repeats,
                        "latent_shape": list(model.latent_shape), "device": str(model.device),
                        "torch_threads": torch.get_num_threads()}}
    report(result, args.out)


if __name__ == "__main__":
    main()
