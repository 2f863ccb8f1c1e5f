"""Tables and figures of an evaluation, from its result rows (one job's, or a whole sweep's).

Steps are grouped into the trajectory's thirds (``phase``: early / middle / late). AUC directions: deletion lower is
better, insertion higher is better (y a similarity; the paper protocol's SIFID distance reverses both).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from diffexplain.metrics.games import Curve, higher_is_better, paper_auc
from diffexplain.metrics.stats import bootstrap_ci, compare_paired
from diffexplain.reporting.tables import MEAN_ITEM

PHASES = ("early", "middle", "late")
PAIR = ["prompt_id", "seed", "step_index"]
LOCALISATION = ("pointing_game", "iou_topk", "iou_chance", "mass_inside", "area_share")


def phase_of(step_index, num_steps: int) -> pd.Series:
    """The third of a ``num_steps`` trajectory each step index falls in."""
    idx = np.minimum(3 * np.asarray(step_index, dtype=np.int64) // max(int(num_steps), 1), 2)
    return pd.Series(pd.Categorical(np.asarray(PHASES)[idx], PHASES, ordered=True))


def with_phase(df: pd.DataFrame, num_steps: int) -> pd.DataFrame:
    """Add the ``phase`` of each row's step; a baseline's missing similarity reads "-" so groupings keep it."""
    df = df.assign(phase=phase_of(df.step_index, num_steps).to_numpy())
    df["phase"] = pd.Categorical(df.phase, PHASES, ordered=True)
    return df.assign(similarity=df.similarity.astype(object).where(df.similarity.notna(), "-"))


def _by(df: pd.DataFrame) -> list[str]:
    """Grouping of configurations: explainer and its similarity (a sweep adds its own columns before calling)."""
    extra = [c for c in ("job", "target") if c in df]
    return [*extra, "explainer", "similarity"]


def auc_table(results: pd.DataFrame, num_steps: int, n_resamples: int = 10_000, baseline: str = "random",
              y: str = "similarity") -> pd.DataFrame:
    """Per configuration and phase: mean deletion/insertion AUC with bootstrap 95 % CIs over items, and the paired
    comparison with ``baseline`` on the same prompts, seeds and steps (share better, mean difference [CI], Wilcoxon p).
    """
    df = results[results.metric.isin(["deletion_auc", "insertion_auc"])]
    if df.empty:
        return pd.DataFrame()
    df = with_phase(df, num_steps)
    base = df[df.explainer == baseline]
    out = []
    keys = [c for c in _by(df) if c != "job"] + ["phase"]
    for key, group in df.groupby(keys, observed=True, dropna=False):
        rec = dict(zip(keys, key))
        for game in ("deletion", "insertion"):
            values = group[group.metric == f"{game}_auc"]
            v = values.value.to_numpy()
            low, high = bootstrap_ci(v, n_resamples)
            rec.update({f"{game}_auc": float(np.mean(v)) if len(v) else np.nan, f"{game}_ci_low": low,
                        f"{game}_ci_high": high})
            rec["n"] = len(v)
            if rec["explainer"] == baseline:
                continue
            paired = values.merge(base[base.metric == f"{game}_auc"], on=PAIR, suffixes=("", "_base"))
            if paired.empty:
                continue
            c = compare_paired(paired.value.to_numpy(), paired.value_base.to_numpy(), higher_is_better(game, y),
                               n_resamples)
            rec.update({f"{game}_win_share": c.better_share, f"{game}_diff": c.mean_difference,
                        f"{game}_diff_ci_low": c.ci_low, f"{game}_diff_ci_high": c.ci_high, f"{game}_p": c.p_value})
        if rec["explainer"] != baseline:
            rec["both_win_share"] = both_win_share(group, base, y)
        out.append(rec)
    return pd.DataFrame(out)


def both_win_share(rows: pd.DataFrame, base: pd.DataFrame, y: str = "similarity") -> float:
    """Share of items (paired on prompt, seed and step) where the explainer beats the baseline on deletion AND
    insertion AUC; NaN without pairs."""
    def wide(df):
        return df.pivot_table(index=PAIR, columns="metric", values="value", aggfunc="mean", dropna=False)

    paired = wide(rows).join(wide(base), rsuffix="_base", how="inner").dropna()
    if paired.empty or "deletion_auc" not in paired or "insertion_auc" not in paired:
        return np.nan
    sign = {g: 1 if higher_is_better(g, y) else -1 for g in ("deletion", "insertion")}
    wins = [sign[g] * (paired[f"{g}_auc"] - paired[f"{g}_auc_base"]) > 0 for g in ("deletion", "insertion")]
    return float((wins[0] & wins[1]).mean())


def paper_auc_table(results: pd.DataFrame, num_steps: int) -> pd.DataFrame:
    """The paper's protocol: per configuration, phase and game, the AUC of the mean curve over prompts, min-max
    normalised (y: single-image FID, lower = closer)."""
    df = results[results.metric.isin(["deletion_curve", "insertion_curve"])]
    if df.empty:
        return pd.DataFrame()
    df = with_phase(df, num_steps)
    keys = [c for c in _by(df) if c != "job"] + ["phase"]
    out = []
    for key, group in df.groupby(keys + ["metric"], observed=True, dropna=False):
        curves = [Curve(g.x.to_numpy(float), g.value.to_numpy(float)) for _, g in
                  group.sort_values("x").groupby(PAIR, dropna=False)]
        out.append({**dict(zip(keys + ["game"], key)), "paper_auc": paper_auc(curves), "n": len(curves)})
    table = pd.DataFrame(out)
    table["game"] = table.game.str.removesuffix("_curve")
    return table


def localisation_table(results: pd.DataFrame, num_steps: int) -> pd.DataFrame:
    """Per configuration and phase: mean localisation scores of the maps against all prompted objects (the chance
    levels alongside: ``area_share`` for mass and pointing, ``iou_chance`` for the IoU)."""
    df = results[results.metric.isin(LOCALISATION) & results.token.isna()]
    if df.empty:
        return pd.DataFrame()
    df = with_phase(df, num_steps)
    keys = [c for c in _by(df) if c != "job"] + ["phase"]
    table = df.pivot_table(index=keys, columns="metric", values="value", aggfunc="mean", observed=True)
    return table.reset_index().rename_axis(columns=None)


def sanity_table(results: pd.DataFrame, n_resamples: int = 10_000) -> pd.DataFrame:
    """Mean Spearman ρ (trained vs randomised maps) per configuration and cascade stage, in cascade order."""
    df = results[results.metric == "sanity_rho"]
    if df.empty:
        return pd.DataFrame()
    df = df.assign(similarity=df.similarity.astype(object).where(df.similarity.notna(), "-"))
    order = list(dict.fromkeys(df.stage))
    keys = [c for c in _by(df) if c != "job"]
    out = []
    for key, group in df.groupby(keys + ["stage"], dropna=False, sort=False):
        low, high = bootstrap_ci(group.value.to_numpy(), n_resamples)
        out.append({**dict(zip(keys + ["stage"], key)), "sanity_rho": group.value.mean(), "ci_low": low,
                    "ci_high": high, "n": len(group), "cascade": order.index(key[-1])})
    return pd.DataFrame(out).sort_values(keys + ["cascade"]).reset_index(drop=True)


def step_correlation_table(results: pd.DataFrame) -> pd.DataFrame:
    """Mean step × step correlations per configuration (long form: step_index, other_step, metric, value)."""
    df = results[results.metric.isin(["step_spearman", "step_pearson"])]
    if df.empty:
        return pd.DataFrame()
    df = df.assign(similarity=df.similarity.astype(object).where(df.similarity.notna(), "-"))
    keys = [c for c in _by(df) if c != "job"]
    return df.groupby(keys + ["metric", "step_index", "other_step"], dropna=False)["value"].mean().reset_index()


def tables(results: pd.DataFrame, num_steps: int, n_resamples: int = 10_000, protocol: str = "per_prompt"
           ) -> dict[str, pd.DataFrame]:
    """Every table of an evaluation, by name (empty ones left out)."""
    out = {"auc": paper_auc_table(results, num_steps) if protocol == "paper" else auc_table(results, num_steps,
                                                                                            n_resamples),
           "localisation": localisation_table(results, num_steps), "sanity": sanity_table(results, n_resamples),
           "step_correlation": step_correlation_table(results)}
    return {k: v for k, v in out.items() if not v.empty}


def figures(results: pd.DataFrame, num_steps: int, fig_dir: Path) -> list[Path]:
    """Mean deletion/insertion curves per explainer and phase, step-correlation matrices, sanity ρ over the cascade."""
    from diffexplain.reporting import plots

    paths = []
    curves = results[results.metric.isin(["deletion_curve", "insertion_curve"])]
    if not curves.empty:
        streamed = (curves.prompt_id == MEAN_ITEM).all()  # a job's mean curves (runner.writer); a report has items
        paths.append(plots.game_curves(with_phase(curves, num_steps), fig_dir / "deletion_insertion.png",
                                       errorbar=None if streamed else ("ci", 95)))
    steps = step_correlation_table(results)
    if not steps.empty:
        paths.append(plots.step_matrices(steps[steps.metric == "step_spearman"], fig_dir / "step_correlation.png"))
    sanity = sanity_table(results, n_resamples=1000)
    if not sanity.empty:
        paths.append(plots.sanity_curve(sanity, fig_dir / "sanity.png"))
    return paths
