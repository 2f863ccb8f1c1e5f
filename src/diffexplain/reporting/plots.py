"""Statistical figures (seaborn): game curves, correlation matrices, sanity curves. Each is saved atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from diffexplain.io import atomic_path  # noqa: E402


def save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def game_curves(curves: pd.DataFrame, path: Path, errorbar=("ci", 95)) -> Path:
    """Mean deletion and insertion curves (95 % CI bands over the items unless ``errorbar=None``) per explainer, one
    column per game, one row per phase."""
    df = curves.assign(game=curves.metric.str.removesuffix("_curve"), x=curves.x.astype(float),
                       value=curves.value.astype(float))
    df["explainer"] = df.explainer.astype(str)
    grid = sns.relplot(df, x="x", y="value", hue="explainer", col="game", row="phase", kind="line",
                       errorbar=errorbar, height=2.4, aspect=1.3, facet_kws={"sharey": False})
    grid.set_axis_labels("share of latent pixels deleted / inserted", "similarity to the unperturbed outcome")
    return save(grid.figure, path)


def step_matrices(steps: pd.DataFrame, path: Path) -> Path:
    """Mean step × step Spearman matrix of each explainer's maps."""
    groups = list(steps.groupby("explainer", dropna=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 3.0), squeeze=False)
    for ax, (name, g) in zip(axes[0], groups):
        idx = sorted(set(g.step_index.astype(int)) | set(g.other_step.astype(int)))
        m = pd.DataFrame(np.eye(len(idx)), index=idx, columns=idx)
        for r in g.itertuples():
            m.loc[int(r.step_index), int(r.other_step)] = m.loc[int(r.other_step), int(r.step_index)] = r.value
        sns.heatmap(m, vmin=-1, vmax=1, cmap="vlag", annot=len(idx) <= 6, fmt=".2f", ax=ax, cbar=False, square=True)
        ax.set_title(f"{name}: Spearman between steps", fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel("step")
    fig.tight_layout()
    return save(fig, path)


def sanity_curve(sanity: pd.DataFrame, path: Path) -> Path:
    """Spearman ρ between trained and randomised maps over the cascade (output side first), per explainer."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, g in sanity.groupby("explainer", dropna=False):
        ax.errorbar(g.cascade, g.sanity_rho, yerr=[g.sanity_rho - g.ci_low, g.ci_high - g.sanity_rho], marker="o",
                    capsize=2, label=str(name))
    stages = sanity.drop_duplicates("cascade").sort_values("cascade")
    ax.set_xticks(stages.cascade, stages.stage, rotation=40, ha="right", fontsize=7)
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_ylim(-1, 1.05)
    ax.set_ylabel("Spearman ρ, trained vs randomised")
    ax.set_title("Model-parameter randomisation (cumulative from the output)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save(fig, path)
