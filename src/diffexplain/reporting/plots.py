"""Statistical figures (seaborn): game curves, correlation matrices, sanity curves. Each is saved atomically."""

from __future__ import annotations

import hashlib
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from diffexplain.io import atomic_path
from diffexplain.reporting.evaluation import PHASES
from diffexplain.reporting.figures import wrap

REFERENCES = ("random", "magnitude", "edges", "randomised")  # the baselines and controls maps are compared with


def save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def identical_groups(df: pd.DataFrame, hue: str, keys: list[str], value: str = "value") -> dict[str, list[str]]:
    """Hue values whose rows are identical (same ``keys`` and ``value``, to 1e-9), by the first of each group."""
    cols = [k for k in keys if k in df]
    signatures: dict[str, list[str]] = {}
    for name, g in df.groupby(hue, sort=False, observed=True, dropna=False):
        g = g[cols + [value]].astype({value: float}).round({value: 9}).astype(str)
        g = g.sort_values(cols + [value]).reset_index(drop=True)
        digest = hashlib.sha1(pd.util.hash_pandas_object(g, index=False).to_numpy().tobytes()).hexdigest()
        signatures.setdefault(digest, []).append(str(name))
    return {names[0]: names for names in signatures.values()}


def game_curves(curves: pd.DataFrame, path: Path, errorbar=("ci", 95)) -> Path:
    """Mean deletion and insertion curves (95 % CI bands over the items unless ``errorbar=None``) per explainer, one
    column per game, one row per phase that has curves. Configurations with identical curves are drawn once, under
    one legend entry naming them all (``a ≡ b``)."""
    df = curves.assign(game=curves.metric.str.removesuffix("_curve"), x=curves.x.astype(float),
                       value=curves.value.astype(float))
    df["explainer"] = df.explainer.astype(str)
    groups = identical_groups(df, "explainer", ["phase", "game", "prompt_id", "seed", "step_index", "x"])
    merged = {first: " ≡ ".join(names) for first, names in groups.items()}
    df = df[df.explainer.isin(merged)].assign(explainer=lambda d: d.explainer.map(merged))
    row = {}
    if "phase" in df:
        present = set(df.phase.astype(str))
        order = [p for p in PHASES if p in present] + sorted(present - set(PHASES))
        df["phase"] = df.phase.astype(str)
        row = {"row": "phase", "row_order": order}
    games = sorted(set(df.game), key=lambda g: (g != "deletion", g != "insertion", g))
    names = list(dict.fromkeys(df.explainer))
    references = [n for n in names if n.split(" ≡ ")[0] in REFERENCES]
    hue_order = [n for n in names if n not in references] + references  # the baselines and controls last
    grid = sns.relplot(df, x="x", y="value", hue="explainer", hue_order=hue_order, col="game", col_order=games,
                       kind="line", errorbar=errorbar, height=2.4, aspect=1.3, facet_kws={"sharey": False}, **row)
    grid.set_titles(row_template="{row_name} steps", col_template="{col_name}")
    grid.set_axis_labels("", "")
    done = {"deletion": "deleted", "insertion": "inserted"}
    for ax, game in zip(grid.axes[-1], games):  # x: the bottom row's, one per game
        ax.set_xlabel(f"share of latent pixels {done.get(game, game)}")
    fig = grid.figure
    fig.supylabel("similarity to the\nunperturbed outcome" if len(row.get("row_order", [0])) < 2
                  else "similarity to the unperturbed outcome", fontsize=9)
    if grid.legend is not None and any(len(names) > 1 for names in groups.values()):
        grid.legend.set_title("explainer\n(≡: identical curves,\ndrawn once)")
    right = getattr(grid, "_tight_layout_rect", [0, 0, 1, 1])[2]  # room FacetGrid keeps for its legend
    grid.tight_layout(rect=(0, 0, right, 1))
    return save(fig, path)


def step_matrices(steps: pd.DataFrame, path: Path) -> Path:
    """Mean step × step Spearman matrix of each explainer's maps, one colour bar."""
    groups = list(steps.groupby("explainer", dropna=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups) + 0.8, 3.2), squeeze=False,
                             layout="constrained")
    for ax, (name, g) in zip(axes[0], groups):
        idx = sorted(set(g.step_index.astype(int)) | set(g.other_step.astype(int)))
        m = pd.DataFrame(np.eye(len(idx)), index=idx, columns=idx)
        for r in g.itertuples():
            m.loc[int(r.step_index), int(r.other_step)] = m.loc[int(r.other_step), int(r.step_index)] = r.value
        sns.heatmap(m, vmin=-1, vmax=1, cmap="vlag", annot=len(idx) <= 6, fmt=".2f", ax=ax, cbar=False, square=True)
        ax.set_title(wrap(f"{name}: Spearman between steps", 3.0, 8), fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel("step")
    bar = fig.colorbar(axes[0, 0].collections[0], ax=axes, shrink=0.8, pad=0.02)
    bar.set_label("Spearman ρ (mean over items)", fontsize=8)
    return save(fig, path)


def sanity_curve(sanity: pd.DataFrame, path: Path) -> Path:
    """Spearman ρ between trained and randomised maps over the cascade (output side first), per explainer."""
    fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
    groups = identical_groups(sanity, "explainer", ["stage", "cascade"], "sanity_rho")  # identical: drawn once
    for name, g in sanity.groupby("explainer", dropna=False):
        if str(name) in groups:
            ax.errorbar(g.cascade, g.sanity_rho, yerr=[g.sanity_rho - g.ci_low, g.ci_high - g.sanity_rho],
                        marker="o", capsize=2, label=" ≡ ".join(groups[str(name)]))
    stages = sanity.drop_duplicates("cascade").sort_values("cascade")
    ax.set_xticks(stages.cascade, stages.stage, rotation=40, ha="right", fontsize=7)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylim(-1, 1.05)
    ax.set_ylabel("Spearman ρ, trained vs randomised")
    ax.set_title("Model-parameter randomisation (cumulative from the output)", fontsize=9)
    same = any(len(names) > 1 for names in groups.values())
    ax.legend(fontsize=7, title="≡: identical, drawn once" if same else None, title_fontsize=7)
    return save(fig, path)
