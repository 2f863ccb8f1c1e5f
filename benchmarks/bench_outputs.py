"""Outputs at paper scale: bytes on disk per item and the writer's peak memory, for 100 and 1000 items of a 512² model.

Each synthetic item is what a 512² Stable Diffusion item of the default job leaves (20 steps, 3 explained): a final
image with photographic content (scikit-image's astronaut, shifted per item), the decoded x0-predictions of the 3
explained steps (blurred, as early predictions are), three 64×64 heatmaps and ~400 result rows (the evaluate job's
curves, AUCs and localisation). They go through the real writer (a shard per item, then the streamed finalize) in a
fresh process per size. Targets: <= 1 MB per item on disk, peak RSS within 10 % between 100 and 1000 items.

    python benchmarks/bench_outputs.py [--sizes 100 1000]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import report  # benchmarks/common.py

ROOT = Path(__file__).resolve().parents[1]


def make_item(k: int):
    import numpy as np
    from scipy.ndimage import gaussian_filter
    from skimage.data import astronaut

    from diffexplain.items import PromptItem, make_prompt_id
    from diffexplain.pipelines.base import ItemOutput
    from diffexplain.reporting.tables import row

    prompt = f"an astronaut number {k}"
    item = PromptItem(make_prompt_id(prompt, 1), prompt, 1)
    rng = np.random.default_rng(k)
    final = np.roll(astronaut(), (k * 7) % 512, axis=1)
    out = ItemOutput(item, timesteps=list(range(999, 0, -50)))
    out.images[f"{item.item_id}/final"] = final
    for step, sigma in ((5, 6.0), (10, 3.0), (15, 1.0)):
        out.images[f"{item.item_id}/x0/{step}"] = gaussian_filter(final, (sigma, sigma, 0)).astype(np.uint8)
        out.heatmaps[f"{item.item_id}/rise/{step}"] = gaussian_filter(rng.random((64, 64)), 3).astype(np.float32)
        for name in ("rise", "random"):
            for game in ("deletion", "insertion"):
                out.rows.append(row(item, f"{game}_auc", rng.random(), step, 500, name, "ssim"))
                out.rows += [row(item, f"{game}_curve", rng.random(), step, 500, name, "ssim", x=j / 16)
                             for j in range(17)]
            out.rows += [row(item, m, rng.random(), step, 500, name, "ssim") for m in
                         ("pointing_game", "iou_topk", "iou_chance", "mass_inside", "area_share", "saliency_inside",
                          "saliency_outside", "truth_spearman")]
    return out


def run_size(n: int, workdir: Path) -> dict:
    """In this (fresh) process: save ``n`` items and finalize; peak RSS and bytes on disk."""
    from diffexplain.items import PromptItem, make_prompt_id
    from diffexplain.pipelines.base import Pipeline
    from diffexplain.runner.writer import OutputWriter

    items = [PromptItem(make_prompt_id(f"an astronaut number {k}", 1), f"an astronaut number {k}", 1) for k in range(n)]
    writer = OutputWriter(workdir, Pipeline(), items, {"pipeline": "bench"}, {"bench": n})
    writer.prepare()
    start = time.perf_counter()
    for k in range(n):
        writer.save(make_item(k))
    saved = time.perf_counter() - start
    rss_saved = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    writer.finalize()
    total = sum(p.stat().st_size for p in workdir.rglob("*") if p.is_file())
    return {"bytes_per_item": total / n, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_rss_saving_mb": rss_saved,
            "save_s_per_item": saved / n, "finalize_s": time.perf_counter() - start - saved,
            "files": {p.name: p.stat().st_size for p in workdir.iterdir() if p.is_file()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_size(args.child, Path(args.dir))))
        return
    results = {}
    for n in args.sizes:
        workdir = Path(tempfile.mkdtemp(prefix=f"bench-outputs-{n}-"))
        try:
            res = subprocess.run([sys.executable, __file__, "--child", str(n), "--dir", str(workdir)], check=True,
                                 capture_output=True, text=True)
            results[str(n)] = json.loads(res.stdout.strip().splitlines()[-1])
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    rss = [results[str(n)]["peak_rss_mb"] for n in args.sizes]
    out = {
        "bytes_per_item": {k: round(v["bytes_per_item"]) for k, v in results.items()},
        "peak_rss_mb": {k: round(v["peak_rss_mb"], 1) for k, v in results.items()},
        "peak_rss_ratio_largest_vs_smallest": round(rss[-1] / rss[0], 3),
        "peak_rss_while_saving_mb": {k: round(v["peak_rss_saving_mb"], 1) for k, v in results.items()},
        "save_s_per_item": {k: round(v["save_s_per_item"], 4) for k, v in results.items()},
        "finalize_s": {k: round(v["finalize_s"], 2) for k, v in results.items()},
        "files_largest_run": results[str(args.sizes[-1])]["files"],
        "item": "512x512 final (lossless WebP) + 3 x0-predictions (WebP q95) + 3 float32 64x64 heatmaps + ~400 rows",
        "targets": {"bytes_per_item_max": 1_000_000, "peak_rss_ratio_max": 1.10},
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
    }
    report(out, ROOT / "benchmarks" / "results" / "outputs.json")


if __name__ == "__main__":
    main()
