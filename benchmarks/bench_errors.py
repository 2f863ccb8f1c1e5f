"""How fast a bad command is refused: wall time of ``python run.py <bad override>`` until its one-line error (target:
< 5 s each, none loads a model or imports torch), for the cases of the reliability issue and those answered from the
model's files (missing, a file, no unet/config.json, truncated weights, a hub id offline), and whether a refused run
or sweep leaves anything behind.

    python benchmarks/bench_errors.py
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import report  # benchmarks/common.py

ROOT = Path(__file__).resolve().parents[1]
CASES = [
    "explainer.p=abc", "model.guidance_scale=abc", "model.guidance_scale=1e30", "model.guidance_scale=inf",
    "data.num_prompts=abc", "data.seeds=abc", "data.seeds=[99999999999999999999]", "data.negative_prompt=123",
    "data.prompt_file={d}/prompts.json", "explainer=cross_attention explainer.roles_file={d}/roles.json",
    "runner=gpu", "data=coco_captions", "explainer=nope", "explainer.n_mask=3", "+explainer.n_mask=3",
    "schedule=exp_late schedule.num_steps=900 schedule.lam=0", "schedule=exp_late model.scheduler=ddim",
    "hydra.run.dir={d}/a_file", "hydra.run.dir=/proc/diffexplain", "resume=maybe", "explainer.steps=[25]",
    # answered from the model's files, without loading it (no torch import)
    "model.path={d}/no_model", "model.path={d}/a_file", "model.path={d}/no_unet_config",
    "model.path={d}/truncated", "model=sd15",
    "schedule=custom schedule.timesteps=[1,500,999]", "explainer=occlusion explainer.window=17",
    "model=tiny explainer=occlusion explainer.window=9", "similarity.kernel_size=10", "similarity.kernel_size=13",
    "+model.resolution=33", "model.scheduler=NopeScheduler", "explainer=cam explainer.modules=up_block.*.resnets.*",
    "similarity=fid similarity.feature_net.path={d}/no_classifier", "data.num_objects=1 data.offset=20",
    "pipeline=train_world pipeline.denoiser.ema_start=5000", "pipeline=train_world +pipeline.vae.nope=1",
    "hydra.run.dir={d}/log_is_a_dir",  # the job's run.log cannot be opened (as for a directory the user cannot write)
    "-m explainer=rise,nope",          # a refused sweep: nothing may be left in hydra.sweep.dir
]


def model_copy(root: Path, unet: dict[str, bytes]) -> None:
    """models/shapes-sd (links) with ``unet/`` holding ``unet`` ({name: bytes})."""
    shapes = ROOT / "models" / "shapes-sd"
    root.mkdir()
    for part in shapes.iterdir():
        if part.name != "unet":
            (root / part.name).symlink_to(part)
    (root / "unet").mkdir()
    for name, data in unet.items():
        (root / "unet" / name).write_bytes(data)


def main() -> None:
    d = Path(tempfile.mkdtemp())
    (d / "prompts.json").write_text('["a red circle",\n  "a blue square"\n')
    (d / "roles.json").write_text('{"a red circle": {"red": "colour",}}')
    (d / "a_file").write_text("")
    (d / "log_is_a_dir" / "run.log").mkdir(parents=True)
    unet = ROOT / "models" / "shapes-sd" / "unet"
    weights = (unet / "diffusion_pytorch_model.safetensors").read_bytes()
    model_copy(d / "no_unet_config", {"diffusion_pytorch_model.safetensors": weights})
    model_copy(d / "truncated", {"config.json": (unet / "config.json").read_bytes(),
                                 "diffusion_pytorch_model.safetensors": weights[: len(weights) // 2]})
    cases = {}
    for case in CASES:
        args = [a.format(d=d) for a in case.split()]
        sweep = d / "sweep"
        times = []
        for _ in range(2):
            start = time.perf_counter()
            flags = [a for a in args if a.startswith("-")]  # -m before the overrides
            res = subprocess.run([sys.executable, str(ROOT / "run.py"), *flags, "logger=none", f"hydra.run.dir={d}/run",
                                  f"hydra.sweep.dir={sweep}", *[a for a in args if a not in flags]],
                                 capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=ROOT)
            times.append(time.perf_counter() - start)
        lines = [x for x in res.stderr.splitlines() if x.strip()]
        left = sorted(str(p.relative_to(d)) for p in (d / "run", sweep) if p.exists())
        cases[case] = {"seconds": round(min(times), 2), "exit": res.returncode, "one_line": len(lines) == 1,
                       "left_behind": left, "message": lines[0][:200] if lines else ""}
    out = {"cases": cases, "max_seconds": max(c["seconds"] for c in cases.values()),
           "median_seconds": statistics.median(c["seconds"] for c in cases.values()),
           "all_exit_2_one_line": all(c["exit"] == 2 and c["one_line"] for c in cases.values()),
           "nothing_left_behind": not any(c["left_behind"] for c in cases.values()),
           "targets": {"max_seconds": 5.0}, "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                                        "load_1min": round(os.getloadavg()[0], 1)}}
    report(out, ROOT / "benchmarks" / "results" / "errors.json")


if __name__ == "__main__":
    main()
