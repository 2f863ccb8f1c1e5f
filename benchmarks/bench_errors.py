"""How fast a bad command is refused: wall time of ``python run.py <bad override>`` until its one-line error (target:
< 5 s where no model load is needed), for the cases of the reliability issue.

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
]


def main() -> None:
    d = Path(tempfile.mkdtemp())
    (d / "prompts.json").write_text('["a red circle",\n  "a blue square"\n')
    (d / "roles.json").write_text('{"a red circle": {"red": "colour",}}')
    (d / "a_file").write_text("")
    cases = {}
    for case in CASES:
        args = [a.format(d=d) for a in case.split()]
        times = []
        for _ in range(2):
            start = time.perf_counter()
            res = subprocess.run([sys.executable, str(ROOT / "run.py"), "logger=none", f"hydra.run.dir={d}/run", *args],
                                 capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
            times.append(time.perf_counter() - start)
        lines = [x for x in res.stderr.splitlines() if x.strip()]
        cases[case] = {"seconds": round(min(times), 2), "exit": res.returncode, "one_line": len(lines) == 1,
                       "message": lines[0][:160] if lines else ""}
    out = {"cases": cases, "max_seconds": max(c["seconds"] for c in cases.values()),
           "median_seconds": statistics.median(c["seconds"] for c in cases.values()),
           "all_exit_2_one_line": all(c["exit"] == 2 and c["one_line"] for c in cases.values()),
           "targets": {"max_seconds": 5.0}, "machine": {"python": platform.python_version()}}
    report(out, ROOT / "benchmarks" / "results" / "errors.json")


if __name__ == "__main__":
    main()
