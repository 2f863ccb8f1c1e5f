"""Two architectures side by side (``experiment=architectures``: the Shapes UNet and its diffusion transformer).

When a sweep's jobs span two or more architectures (each named by its ``model`` choice and the family in
``run.json``: ``shapes (unet)``, ``shapes_mmdit (sd3)``), the report gets per configuration and phase each
architecture's faithfulness (games and controls), localisation, Monte-Carlo reliability and sanity, the per-word
localisation of the per-word explainers (cross-attention, attention relevance, ConceptAttention) head to head, and one
figure per measure.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from diffexplain.metrics.stats import bootstrap_ci
from diffexplain.reporting.evaluation import PAIR, PHASES
from diffexplain.reporting.figures import wrap
from diffexplain.reporting.plots import save

KEYS = ["configuration", "phase", "architecture"]
SUMMARY_COLUMNS = ["n", "both_win_share", "beats_random", "beats_input_controls", "beats_randomised", "verdict",
                   "deletion_auc", "deletion_ci_low", "deletion_ci_high", "insertion_auc", "insertion_ci_low",
                   "insertion_ci_high", "mass_inside", "area_share", "iou_topk", "iou_chance", "mc_reliability",
                   "mc_reliability_min", "sanity_rho_full", "sanity_ci_low", "sanity_ci_high", "sanity_verdict"]
WORD_METRICS = {"iou_topk": "word_iou", "pointing_game": "word_pointing"}


@dataclass(frozen=True)
class Measure:
    """A column drawn per architecture, with its CI and chance-level columns where it has them."""

    column: str
    title: str
    low: str | None = None
    high: str | None = None
    chance: str | None = None


MEASURES = [Measure("both_win_share", "both games won vs random (share of items)"),
            Measure("deletion_auc", "deletion AUC (lower is better)", "deletion_ci_low", "deletion_ci_high"),
            Measure("insertion_auc", "insertion AUC (higher is better)", "insertion_ci_low", "insertion_ci_high"),
            Measure("mass_inside", "mass inside the objects (dashes: area share)", chance="area_share"),
            Measure("iou_topk", "top-k IoU (dashes: chance)", chance="iou_chance"),
            Measure("mc_reliability", "Monte-Carlo reliability"),
            Measure("sanity_rho_full", "sanity ρ at full randomisation (lower is better)", "sanity_ci_low",
                    "sanity_ci_high")]
WORD_MEASURES = [Measure("word_iou", "per-word top-k IoU", "word_iou_ci_low", "word_iou_ci_high"),
                 Measure("word_pointing", "per-word pointing game", "word_pointing_ci_low", "word_pointing_ci_high")]


def architecture(job) -> str:
    """A job's architecture: its ``model`` choice and ``run.json``'s family (``shapes_mmdit (sd3)``)."""
    model = job.info.get("choices", {}).get("model")
    family = (job.info.get("architecture") or {}).get("family")
    return f"{model} ({family})" if model and family else str(model or family)


def configuration(job, similarities: bool) -> str:
    """A job's explainer and the settings it varies other than the model's (``rise target=x0``)."""
    parts = [f"{k.removeprefix('explainer.')}={v}" for k, v in job.settings.items()
             if v is not None and not k.startswith(("model.", "similarity."))]
    sim = [f"sim={job.similarity}"] if similarities and job.similarity else []
    return " ".join([str(job.info["explainer"]["name"]), *sim, *parts])


def _jobs(jobs) -> pd.DataFrame:
    """Per explained job (by name and by its names with twins): its configuration and architecture, in sweep order;
    empty unless there are 2 or more architectures."""
    explained = [j for j in jobs if (j.info.get("explainer") or {}).get("name")]
    similarities = len({j.similarity for j in explained if j.similarity is not None}) > 1
    df = pd.DataFrame([{"name": j.name, "names": j.names, "configuration": configuration(j, similarities),
                        "architecture": architecture(j)} for j in explained])
    return df if not df.empty and df.architecture.nunique() > 1 else pd.DataFrame()


def _ordered(df: pd.DataFrame, order: pd.DataFrame) -> pd.DataFrame:
    """Rows by configuration (sweep order), phase, then architecture (sweep order)."""
    cats = {"configuration": list(dict.fromkeys(order.configuration)), "phase": list(PHASES),
            "architecture": list(dict.fromkeys(order.architecture))}
    df = df.assign(**{k: pd.Categorical(df[k].astype(str), v, ordered=True) for k, v in cats.items()})
    return df.sort_values(KEYS).reset_index(drop=True).astype({k: str for k in KEYS})


def side_by_side(jobs, summary: pd.DataFrame) -> pd.DataFrame:
    """The summary's measures per configuration, phase and architecture (long, numeric; ``architectures.csv``);
    empty unless the jobs span 2 or more architectures."""
    order = _jobs(jobs)
    if order.empty or summary.empty:
        return pd.DataFrame()
    df = summary.merge(order[["names", "configuration", "architecture"]], left_on="job", right_on="names")
    return _ordered(df[[*KEYS, "explainer", *[c for c in SUMMARY_COLUMNS if c in df]]], order)


def word_side_by_side(jobs, rows: pd.DataFrame, n_resamples: int) -> pd.DataFrame:
    """Per-word localisation (each word's map against its own object: the rows of the report's per-word table) per
    configuration, phase and architecture: top-k IoU and pointing game, each item's (prompt, seed, step) mean over its
    words, mean and bootstrap 95 % CI over items; empty unless there are 2 or more architectures."""
    order = _jobs(jobs)
    if order.empty or rows.empty:
        return pd.DataFrame()
    df = rows[rows.metric.isin(list(WORD_METRICS)) & rows.token.notna()]
    df = df.merge(order[["name", "configuration", "architecture"]], left_on="job", right_on="name")
    out = []
    for key, group in df.groupby(KEYS, observed=True, sort=False):
        rec = {**dict(zip(KEYS, key)), "explainer": group.explainer.iloc[0],
               "items": len(group[PAIR].drop_duplicates()), "maps": len(group[[*PAIR, "token"]].drop_duplicates())}
        for metric, name in WORD_METRICS.items():
            v = group[group.metric == metric].groupby(PAIR, observed=True).value.mean().to_numpy(float)
            low, high = bootstrap_ci(v, n_resamples)
            rec.update({name: float(v.mean()) if len(v) else np.nan, f"{name}_ci_low": low, f"{name}_ci_high": high})
        out.append(rec)
    return _ordered(pd.DataFrame(out), order) if out else pd.DataFrame()


def _num(value) -> str:
    return "–" if pd.isna(value) else f"{value:.3f}"


def _ci(r: pd.Series, m: Measure) -> str:
    value, low, high = r.get(m.column), r.get(m.low), r.get(m.high)
    if pd.isna(value) or pd.isna(low) or pd.isna(high):
        return _num(value)
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _vs(r: pd.Series, m: Measure) -> str:
    return _num(r.get(m.column)) if pd.isna(r.get(m.chance)) else f"{_num(r.get(m.column))} vs {r[m.chance]:.3f}"


def _beats(r: pd.Series) -> str:
    said = ["–" if pd.isna(r.get(c)) else ("yes" if r[c] else "no") for c in ("beats_input_controls",
                                                                              "beats_randomised")]
    return "–" if said == ["–", "–"] else " / ".join(said)


def wide(long: pd.DataFrame, cells: dict[str, Callable[[pd.Series], str]]) -> pd.DataFrame:
    """One row per configuration and phase, each cell's column once per architecture, side by side; columns that no
    architecture has are left out."""
    archs = list(dict.fromkeys(long.architecture))
    out = []
    for (config, phase), group in long.groupby(["configuration", "phase"], sort=False):
        by = {r.architecture: r for _, r in group.iterrows()}
        out.append({"explainer": config, "phase": phase,
                    **{f"{head}: {a}": cell(by[a]) if a in by else "–" for head, cell in cells.items() for a in archs}})
    table = pd.DataFrame(out)
    return table.loc[:, (table != "–").any()]


def table(long: pd.DataFrame) -> pd.DataFrame:
    """The report's side-by-side table of :func:`side_by_side`."""
    m = {x.column: x for x in MEASURES}
    return wide(long, {"both won": lambda r: _num(r.get("both_win_share")),
                       "beats input controls / randomised": _beats,
                       "deletion AUC [CI]": lambda r: _ci(r, m["deletion_auc"]),
                       "insertion AUC [CI]": lambda r: _ci(r, m["insertion_auc"]),
                       "mass inside vs area share": lambda r: _vs(r, m["mass_inside"]),
                       "top-k IoU vs chance": lambda r: _vs(r, m["iou_topk"]),
                       "MC reliability": lambda r: _num(r.get("mc_reliability")),
                       "sanity ρ [CI]": lambda r: _ci(r, m["sanity_rho_full"])})


def word_table(words: pd.DataFrame) -> pd.DataFrame:
    """The report's per-word head-to-head table of :func:`word_side_by_side`."""
    return wide(words, {"per-word IoU [CI]": lambda r: _ci(r, WORD_MEASURES[0]),
                        "per-word pointing [CI]": lambda r: _ci(r, WORD_MEASURES[1])})


def bars(long: pd.DataFrame, measures: list[Measure], path: Path, title: str) -> Path:
    """Grouped bars: configurations on the x axis, one bar per architecture (whiskers: 95 % CI where measured,
    dashes: chance level), one row per measure, one panel per phase."""
    configs, archs = list(dict.fromkeys(long.configuration)), list(dict.fromkeys(long.architecture))
    phases = [p for p in PHASES if p in set(long.phase)]
    colours = dict(zip(archs, sns.color_palette(n_colors=len(archs))))
    width = 0.8 / len(archs)
    panel = max(2.8, 0.35 * len(configs) * len(archs) + 0.8)
    fig, axes = plt.subplots(len(measures), len(phases), figsize=(panel * len(phases) + 1.8, 2.8 * len(measures)),
                             squeeze=False, sharey="row", layout="constrained")
    handles = {}
    for row, m in enumerate(measures):
        for ax, phase in zip(axes[row], phases):
            sel = long[long.phase == phase]
            for k, arch in enumerate(archs):
                s = sel[sel.architecture == arch].set_index("configuration").reindex(configs)
                x = np.arange(len(configs)) + (k - (len(archs) - 1) / 2) * width
                y = s[m.column].to_numpy(float)
                err = None
                if m.low in s and m.high in s:
                    low, high = s[m.low].to_numpy(float), s[m.high].to_numpy(float)
                    err = np.nan_to_num(np.abs(np.vstack([y - low, high - y])))
                handles[arch] = ax.bar(x, y, width, yerr=err, capsize=2, color=colours[arch])
                if m.chance in s:
                    handles["chance"] = ax.hlines(s[m.chance].to_numpy(float), x - width / 2, x + width / 2,
                                                  colors="black", linestyles="--", lw=1)
            ax.set_xticks(np.arange(len(configs)), [wrap(c, 1.2, 7) for c in configs], rotation=30, ha="right",
                          fontsize=7)
            ax.tick_params(axis="y", labelsize=7)
            if row == 0:
                ax.set_title(f"{phase} steps", fontsize=9)
        axes[row, 0].set_ylabel(wrap(m.title, 2.6, 8), fontsize=8)
    names = [n for n in [*archs, "chance"] if n in handles]
    fig.legend([handles[n] for n in names], names, loc="outside right center", fontsize=7, title="architecture",
               title_fontsize=7)
    fig.suptitle(title, fontsize=10)
    return save(fig, path)


def figures(long: pd.DataFrame | None, words: pd.DataFrame | None, fig_dir: Path) -> list[Path]:
    """One figure per measure the side-by-side table has (``architectures_{measure}.png``) and one of the per-word
    localisation (``architectures_words.png``)."""
    paths = []
    if long is not None and not long.empty:
        for m in MEASURES:
            if m.column in long and long[m.column].notna().any():
                paths.append(bars(long, [m], fig_dir / f"architectures_{m.column}.png",
                                  f"Two architectures: {m.title}"))
    if words is not None and not words.empty:
        paths.append(bars(words, WORD_MEASURES, fig_dir / "architectures_words.png",
                          "Two architectures: each word's map against its own object"))
    return paths
