"""Summaries of explain runs: localisation per explainer, word and stage; token roles per schedule and stage.

    python -m diffexplain.reporting.summary RUN_DIR [RUN_DIR ...]    # markdown tables (a multirun root works)

Stages split each trajectory's steps into thirds (early / middle / late). ``inside_gt_outside`` is the share of
(prompt, step) maps whose mean saliency inside the prompted objects exceeds that outside; ``pointing_game`` the
share whose maximum lies inside.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from diffexplain.metrics.token_roles import stage_table

STAGES = ("early", "middle", "late")


def with_stage(df: pd.DataFrame) -> pd.DataFrame:
    """Add a ``stage`` column: the third of its trajectory each step index falls in."""
    n = df.groupby("prompt_id")["step_index"].transform("max") + 1
    df = df.assign(stage=[STAGES[min(int(3 * s // m), 2)] for s, m in zip(df.step_index, n)])
    df["stage"] = pd.Categorical(df["stage"], STAGES, ordered=True)
    return df


def localisation_summary(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (explainer, token, stage): share of maps inside > outside, pointing game, number of maps."""
    df = results[results.metric.isin(["saliency_inside", "saliency_outside", "pointing_game"])]
    if df.empty:
        return pd.DataFrame()
    keys = ["explainer", "prompt_id", "step_index", "token"]
    wide = df.assign(token=df.token.fillna("(all objects)")).pivot_table(
        index=keys, columns="metric", values="value", observed=True).reset_index()
    wide = with_stage(wide)
    wide["inside_gt_outside"] = (wide.saliency_inside > wide.saliency_outside).astype(float)
    return (wide.groupby(["explainer", "token", "stage"], observed=True)
            .agg(inside_gt_outside=("inside_gt_outside", "mean"), pointing_game=("pointing_game", "mean"),
                 maps=("pointing_game", "size"))
            .reset_index())


def load_results(run_dirs: list[str]) -> pd.DataFrame:
    """results.parquet of every run directory (searched recursively, e.g. a multirun root), with each job's
    ``schedule`` choice from its run.json."""
    files = [f for d in run_dirs for f in sorted(Path(d).rglob("results.parquet"))]
    if not files:
        raise SystemExit(f"no results.parquet under {' '.join(run_dirs)}")
    frames = []
    for f in files:
        run_json = f.parent / "run.json"  # written last: absent while a job is still finishing
        info = json.loads(run_json.read_text()) if run_json.is_file() else {}
        frames.append(pd.read_parquet(f).assign(schedule=info.get("choices", {}).get("schedule")))
    return pd.concat(frames, ignore_index=True)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise SystemExit(__doc__)
    results = load_results(args)
    localisation = localisation_summary(results)
    if not localisation.empty:
        print("## Localisation\n\n" + localisation.to_markdown(index=False, floatfmt=".3f") + "\n")
    if (results.metric == "role_share").any():
        print("## Token roles (mean share of the words' cross-attention)\n\n"
              + stage_table(results).to_markdown(floatfmt=".3f"))


if __name__ == "__main__":
    main()
