"""Figures of ``pipeline=noised_classifier``: true-class softmax and accuracy over timesteps per class, attribution
grids over the chosen steps, and where attribution mass lies relative to the object's outline."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from diffexplain.reporting.figures import colour_bar, normalised, wrap

MAX_PANELS = 16


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path


def softmax_curves(curves: pd.DataFrame, classes: pd.DataFrame, path: Path) -> Path:
    """One panel per class (the first 16): mean true-class softmax over t with its bootstrap CI, the smoothed mean,
    and the steep-rise step (dashed)."""
    names = list(classes["class"])[:MAX_PANELS]
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False, sharex=True, sharey=True)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        c = curves[curves["class"] == name]
        ax.fill_between(c.t, c.ci_low, c.ci_high, alpha=0.3, lw=0, label="95% CI")
        ax.plot(c.t, c.softmax_true, lw=1, label="mean")
        ax.plot(c.t, c.smoothed, lw=1, ls=":", color="k", label="smoothed")
        info = classes[classes["class"] == name].iloc[0]
        ax.axvline(info.steep_rise_t, color="C3", ls="--", lw=1, label=f"steep rise t={info.steep_rise_t:.0f}")
        ax.set_title(f"{name} (n={info.n_images})", fontsize=8)
        ax.legend(fontsize=6, loc="upper right")
        ax.set_ylim(-0.02, 1.02)
    for ax in axes[-1]:
        ax.set_xlabel("timestep t (noisier →)", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("softmax of true class", fontsize=8)
    fig.suptitle("True-class softmax of the noised images over t", fontsize=10)
    return _save(fig, path)


def accuracy_curves(curves: pd.DataFrame, path: Path) -> Path:
    """Top-1 accuracy over t: one thin line per class (the first 16) and the mean over classes."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for name in list(dict.fromkeys(curves["class"]))[:MAX_PANELS]:
        c = curves[curves["class"] == name]
        ax.plot(c.t, c.accuracy, lw=0.8, alpha=0.7, label=name)
    mean = curves.groupby("t")["accuracy"].mean()
    ax.plot(mean.index, mean.values, color="k", lw=2, label="mean of classes")
    ax.axhline(0.5, color="grey", ls="--", lw=0.8)
    ax.set(xlabel="timestep t (noisier →)", ylabel="top-1 accuracy", ylim=(-0.02, 1.02),
           title="Top-1 accuracy of the noised images over t")
    ax.legend(fontsize=6, ncol=2, loc="upper right")
    return _save(fig, path)


def outline_plot(outline: pd.DataFrame, path: Path) -> Path:
    """Per method, over the attributed positions (noisiest first): the outline/interior and inner-edge/interior
    mass-per-pixel ratios, and the share of attribution mass inside the object."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for method, g in outline.groupby("method", sort=False):
        g = g.sort_values("t", ascending=False)
        line, = axes[0].plot(g.position, g.outline_vs_interior, marker="o", label=f"{method}: outline")
        axes[0].plot(g.position, g.edge_vs_interior, marker="x", ls=":", color=line.get_color(),
                     label=f"{method}: inner edge")
        axes[1].plot(g.position, g.mass_object, marker="o", label=method)
    axes[0].axhline(1.0, color="grey", ls="--", lw=0.8)
    axes[0].set(ylabel="band / interior (mass per pixel)", title="outline band vs interior")
    axes[1].set(ylabel="share of mass inside the object", title="inside the object", ylim=(0, 1))
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        ax.set_xlabel("attributed step (noisier →  cleaner)")
        ax.legend(fontsize=6)
    return _save(fig, path)


def attribution_grid(noised: list[np.ndarray], maps: dict[str, list[np.ndarray]], titles: list[str], path: Path,
                     suptitle: str = "") -> Path:
    """The noised images (top row) and one row per method with its maps overlaid on them (each min-max scaled, one
    colour bar); images HWC in [0, 1]."""
    rows, cols = 1 + len(maps), len(noised)
    width = 1.6 * cols + 1.6
    fig, axes = plt.subplots(rows, cols, figsize=(width, 1.6 * rows + 0.6), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for j, img in enumerate(noised):
        h, w = img.shape[:2]
        axes[0, j].imshow(np.clip(img, 0, 1), interpolation="nearest")
        axes[0, j].set_title(titles[j], fontsize=7)
        for i, overlays in enumerate(maps.values(), start=1):
            axes[i, j].imshow(np.clip(img, 0, 1), interpolation="nearest")
            axes[i, j].imshow(normalised(overlays[j]), cmap="jet", alpha=0.55, vmin=0, vmax=1,
                              extent=(-0.5, w - 0.5, h - 0.5, -0.5), interpolation="bilinear")
    axes[0, 0].set_ylabel("noised", fontsize=7)
    for i, method in enumerate(maps, start=1):
        axes[i, 0].set_ylabel(method.replace("_", " "), fontsize=7)
    if maps:
        colour_bar(fig, axes, "attribution (min–max per map)")
    if suptitle:
        fig.suptitle(wrap(suptitle, width - 0.2, 9), fontsize=9)
    return _save(fig, path)
