"""The report's figures: the similarity ablation, side-by-side heatmaps, cross-explainer correlations, curves, and
two architectures side by side."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from diffexplain import io
from diffexplain.reporting import architectures
from diffexplain.reporting.figures import colour_bar, overlay, wrap
from diffexplain.reporting.plots import game_curves, save


def draw(jobs, summary: pd.DataFrame, tables: dict[str, pd.DataFrame], rows: pd.DataFrame, fig_dir: Path
         ) -> list[Path]:
    """Every figure of the report (``tables``: the report's, by name)."""
    paths = []
    if not summary.empty and "insertion_auc" in summary:
        for explainer, sub in summary.groupby("explainer"):
            if sub.similarity.nunique() > 1:
                paths.append(similarity_ablation(sub, fig_dir / f"similarity_ablation_{explainer}.png"))
    curves = rows[rows.metric.isin(["deletion_curve", "insertion_curve"])] if not rows.empty else rows
    if not curves.empty:
        # each configuration's own map under its label, and the random baseline the jobs share (the other controls
        # are in each job's figures)
        own = curves.explainer.astype(str) == curves.job.map({j.name: _explainer(j) for j in jobs}).astype(str)
        shown = curves[own | (curves.explainer.astype(str) == "random")]
        labelled = shown.assign(explainer=np.where(own[shown.index], shown.label.astype(str), "random"))
        paths.append(game_curves(labelled.drop_duplicates(["explainer", "prompt_id", "seed", "step_index", "metric",
                                                           "x"]), fig_dir / "deletion_insertion.png"))
    grid = heatmap_grid(jobs, fig_dir / "heatmaps.png")
    if grid is not None:
        paths.append(grid)
    cross = tables.get("cross_explainer")
    if cross is not None and not cross.empty:
        paths.append(correlation_matrix(cross[cross.method == "spearman"], fig_dir / "cross_explainer.png"))
    return paths + architectures.figures(tables.get("architectures"), tables.get("architecture_words"), fig_dir)


def _explainer(job) -> str | None:
    """The name of the explainer a job ran (``run.json``), else its ``explainer`` choice."""
    return (job.info.get("explainer") or {}).get("name") or job.info.get("choices", {}).get("explainer")


def similarity_ablation(summary: pd.DataFrame, path: Path) -> Path:
    """Paper A's Fig. 5 form: one explainer's deletion and insertion AUC per similarity function (bars: mean over
    items, whiskers: 95 % CI), one bar per phase; configurations that differ otherwise too are told apart by label."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    key = "similarity" if not summary.duplicated(["similarity", "phase"]).any() else "label"
    for ax, game in zip(axes, ("deletion", "insertion")):
        if f"{game}_auc" not in summary:
            continue
        df = summary.dropna(subset=[f"{game}_auc"])
        sims, phases = list(dict.fromkeys(df[key].astype(str))), list(dict.fromkeys(df.phase))
        width = 0.8 / max(len(phases), 1)
        for k, phase in enumerate(phases):
            sel = df[df.phase == phase].set_index(df[df.phase == phase][key].astype(str)).reindex(sims)
            mean = sel[f"{game}_auc"].to_numpy(float)
            err = np.vstack([mean - sel[f"{game}_ci_low"].to_numpy(float),
                             sel[f"{game}_ci_high"].to_numpy(float) - mean])
            ax.bar(np.arange(len(sims)) + k * width, mean, width, yerr=np.nan_to_num(err), capsize=2, label=phase)
        ax.set_xticks(np.arange(len(sims)) + width * (len(phases) - 1) / 2, sims, rotation=30, ha="right")
        better = "lower" if game == "deletion" else "higher"
        ax.set_title(f"{game} AUC ({better} is better)", fontsize=9)
    axes[-1].legend(fontsize=7, title="phase", title_fontsize=7)
    fig.suptitle(f"Similarity ablation: {summary.explainer.iloc[0]}", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def heatmap_grid(jobs, path: Path, max_steps: int = 6) -> Path | None:
    """For the first prompt every job explains: each configuration's maps over the steps, side by side (rows), on the
    decoded x0-prediction of the step where kept, else the final image."""
    keyed = []
    for job in jobs:
        heat = job.path / "heatmaps.npz"
        if heat.is_file():
            keyed.append((job, heat))
    if not keyed:
        return None
    items = []
    for _, h in keyed:
        with np.load(h) as npz:
            items.append({k.split("/")[0] for k in npz.files})
    shared = sorted(set.intersection(*items)) if items else []
    if not shared:
        return None
    pid = shared[0]
    images = {}
    for job, _ in keyed:
        images.update({k: v for k, v in io.ImageFiles(job.path / "images").items() if k.startswith(f"{pid}/")})
    rows = []
    for job, heat in keyed:
        with np.load(heat) as npz:
            maps: dict[int, np.ndarray] = {}
            for key in npz.files:
                parts = key.split("/")
                if parts[0] == pid and len(parts) >= 3 and parts[2].isdigit():
                    step = int(parts[2])
                    maps[step] = maps[step] + npz[key] if step in maps else npz[key].astype(np.float32)
        if maps:
            rows.append((job.label, maps))
    steps = sorted(set().union(*[m.keys() for _, m in rows]))[:max_steps]
    final = images.get(f"{pid}/final")
    width = 1.7 * len(steps) + 2.4
    fig, grid = plt.subplots(len(rows), len(steps) + 1, figsize=(width, 1.7 * len(rows) + 0.7), squeeze=False,
                             layout="constrained", width_ratios=[0.6] + [1] * len(steps))
    axes = grid[:, 1:]
    for r, (label, maps) in enumerate(rows):
        grid[r, 0].axis("off")  # the row's label, inside the figure whatever its length
        grid[r, 0].text(1.0, 0.5, wrap(label, 0.9, 7), fontsize=7, ha="right", va="center",
                        transform=grid[r, 0].transAxes)
        for c, step in enumerate(steps):
            ax = axes[r, c]
            ax.axis("off")
            base = images.get(f"{pid}/x0/{step}", final)
            if step in maps and base is not None:
                ax.imshow(overlay(base, maps[step]))
            if r == 0:
                ax.set_title(f"step {step}", fontsize=7)
    colour_bar(fig, axes)
    prompt = next((j.info.get("items") for j in jobs if j.info.get("items")), [{}])
    prompt = next((it.get("prompt") for it in prompt if it.get("prompt_id") == pid), pid)
    fig.suptitle(wrap(f"{prompt!r}: every configuration's maps", width - 0.2, 9), fontsize=9)
    return save(fig, path)


def correlation_matrix(cross: pd.DataFrame, path: Path) -> Path:
    """Mean Spearman ρ between every pair of configurations' maps (same prompt and step)."""
    labels = list(dict.fromkeys([*cross.a, *cross.b]))
    m = pd.DataFrame(np.eye(len(labels)), index=labels, columns=labels)
    for r in cross.itertuples():
        m.loc[r.a, r.b] = m.loc[r.b, r.a] = r.mean
    fig, ax = plt.subplots(figsize=(1.0 * len(labels) + 3, 0.8 * len(labels) + 2))
    sns.heatmap(m, vmin=-1, vmax=1, cmap="vlag", annot=len(labels) <= 10, fmt=".2f", square=True, ax=ax)
    ax.set_title("Cross-explainer Spearman ρ of maps (same prompt, seed and step)", fontsize=9)
    fig.tight_layout()
    return save(fig, path)
