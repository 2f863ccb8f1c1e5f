"""Tables and figures of an evaluation, from its result rows (one job's, or a whole sweep's).

Steps are grouped into the trajectory's thirds (``phase``: early / middle / late). AUC directions: deletion lower is
better, insertion higher is better (y a similarity; the paper protocol's SIFID distance reverses both).

Every explainer is compared, paired per item, with ``random`` (unprefixed columns ``deletion_win_share``, ...) and
with each control present (:mod:`diffexplain.metrics.controls`: columns prefixed ``magnitude_``, ``edges_``,
``randomised_``). An explainer *beats* a reference on a game when the bootstrap 95 % CI of its mean paired AUC
difference lies on the better side of 0; the ``verdict`` needs more than beating random: beating the input-only
controls (``magnitude``, ``edges``) on both games, or it says plainly that it does not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from diffexplain.config.options import CONTROLS, SANITY_LINE
from diffexplain.metrics.games import Curve, higher_is_better, paper_auc
from diffexplain.metrics.stats import bootstrap_ci, compare_paired
from diffexplain.reporting.tables import MEAN_ITEM

PHASES = ("early", "middle", "late")
PAIR = ["prompt_id", "seed", "step_index"]
LOCALISATION = ("pointing_game", "iou_topk", "iou_chance", "mass_inside", "area_share")
INPUT_ONLY = ("magnitude", "edges")  # the controls an explanation of the model must beat
REFERENCES = ("random", *CONTROLS)  # maps every explainer is compared with (not explainers themselves)
GAME_NAMES = ("deletion", "insertion")


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
    comparison with ``baseline`` on the same prompts, seeds and steps (share better, mean difference [CI], Wilcoxon p);
    explainers (not the references) are also compared with every control present (the same columns prefixed with the
    control's name, ``{control}_both_win_share``) and get a ``verdict`` (:func:`verdict`) with ``beats_random``,
    ``beats_input_controls`` and ``beats_randomised`` (1 / 0, NaN where not measured).
    """
    df = results[results.metric.isin(["deletion_auc", "insertion_auc"])]
    if df.empty:
        return pd.DataFrame()
    df = with_phase(df, num_steps)
    refs = {r: df[df.explainer == r] for r in dict.fromkeys((baseline, *CONTROLS))}
    refs = {r: rows for r, rows in refs.items() if not rows.empty}  # the references this job measured
    out = []
    keys = [c for c in _by(df) if c != "job"] + ["phase"]
    for key, group in df.groupby(keys, observed=True, dropna=False):
        rec = dict(zip(keys, key))
        name = rec["explainer"]
        explainer = name not in REFERENCES
        for game in GAME_NAMES:
            values = group[group.metric == f"{game}_auc"]
            v = values.value.to_numpy()
            low, high = bootstrap_ci(v, n_resamples)
            rec.update({f"{game}_auc": float(np.mean(v)) if len(v) else np.nan, f"{game}_ci_low": low,
                        f"{game}_ci_high": high})
            rec["n"] = len(v)
            for ref, base in refs.items():
                if ref == name or (ref != baseline and not explainer):
                    continue
                paired = values.merge(base[base.metric == f"{game}_auc"], on=PAIR, suffixes=("", "_base"))
                if paired.empty:
                    continue
                c = compare_paired(paired.value.to_numpy(), paired.value_base.to_numpy(), higher_is_better(game, y),
                                   n_resamples)
                pre = "" if ref == baseline else f"{ref}_"
                rec.update({f"{pre}{game}_win_share": c.better_share, f"{pre}{game}_diff": c.mean_difference,
                            f"{pre}{game}_diff_ci_low": c.ci_low, f"{pre}{game}_diff_ci_high": c.ci_high,
                            f"{pre}{game}_p": c.p_value})
        for ref, base in refs.items():
            if ref == name or (ref != baseline and not explainer):
                continue
            rec[("" if ref == baseline else f"{ref}_") + "both_win_share"] = both_win_share(group, base, y)
        if explainer:
            rec.update(verdict(rec, y, baseline))
        out.append(rec)
    return pd.DataFrame(out)


def beats(rec: dict, game: str, prefix: str = "", y: str = "similarity") -> float:
    """1 if the bootstrap 95 % CI of the paired AUC difference on ``game`` lies on the better side of 0, 0 if not,
    NaN without a comparison (or with an undefined CI: fewer than 2 items)."""
    low, high = rec.get(f"{prefix}{game}_diff_ci_low", np.nan), rec.get(f"{prefix}{game}_diff_ci_high", np.nan)
    if not (np.isfinite(low) and np.isfinite(high)):
        return np.nan
    return float(low > 0 if higher_is_better(game, y) else high < 0)


def verdict(rec: dict, y: str = "similarity", baseline: str = "random") -> dict:
    """The verdict of one explainer row of :func:`auc_table`: does it beat random, the input-only controls and its
    own randomised-model map on both games (CI of the mean paired difference clear of 0)? A plain sentence in
    ``verdict`` and 1 / 0 / NaN in ``beats_random``, ``beats_input_controls``, ``beats_randomised``."""
    def both(prefix: str) -> tuple[float, list[str]]:
        wins = {g: beats(rec, g, prefix, y) for g in GAME_NAMES}
        if any(np.isnan(w) for w in wins.values()):
            return np.nan, [g for g, w in wins.items() if np.isnan(w)]
        return float(all(wins.values())), [g for g, w in wins.items() if not w]

    out: dict = {}
    random_ok, random_missed = both("")
    out["beats_random"] = random_ok
    controls = [c for c in INPUT_ONLY if f"{c}_deletion_diff" in rec or f"{c}_insertion_diff" in rec]
    results = {c: both(f"{c}_") for c in controls}
    out["beats_input_controls"] = (np.nan if not controls or any(np.isnan(r[0]) for r in results.values())
                                   else float(all(r[0] for r in results.values())))
    has_randomised = "randomised_deletion_diff" in rec or "randomised_insertion_diff" in rec
    randomised_ok, randomised_missed = both("randomised_") if has_randomised else (np.nan, [])
    out["beats_randomised"] = randomised_ok
    if np.isnan(random_ok):
        text = f"undecided: too few items to compare with {baseline}"
    elif not random_ok:
        text = f"does not beat {baseline} on both games (not on {' and '.join(random_missed)})"
    elif not controls:
        text = f"beats {baseline} on both games; no input-only control measured"
    elif np.isnan(out["beats_input_controls"]):
        text = f"beats {baseline} on both games; input-only controls undecided (too few items)"
    elif out["beats_input_controls"]:
        text = f"beats {baseline} and the input-only controls ({', '.join(controls)}) on both games"
    else:
        missed = "; ".join(f"{c} on {' and '.join(m)}" for c, (ok, m) in results.items() if not ok)
        text = f"beats {baseline} but NOT the input-only controls on both games (not {missed})"
    if has_randomised and not np.isnan(randomised_ok):
        text += ("; beats its randomised-model map on both games" if randomised_ok else
                 f"; does NOT beat its randomised-model map (on {' and '.join(randomised_missed)})")
    out["verdict"] = text
    return out


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


def sanity_table(results: pd.DataFrame, n_resamples: int = 10_000, line: float = SANITY_LINE) -> pd.DataFrame:
    """Per configuration and cascade stage (in cascade order): mean ρ (trained vs randomised maps) with a bootstrap
    95 % CI over items, the noise floor (``floor``: ρ between two independent draws of the trained model's map, with
    its CI; 1 for deterministic maps) and the ``verdict`` against ``line`` (ρ 0.3): ``passes`` (CI upper end below
    it), ``fails`` (CI lower end above it), ``undecided`` (the CI straddles it, fewer than 2 items, or a noise floor
    not above the line — a map that does not reproduce itself cannot show that it changes with the model)."""
    df = results[results.metric == "sanity_rho"]
    if df.empty:
        return pd.DataFrame()
    df = df.assign(similarity=df.similarity.astype(object).where(df.similarity.notna(), "-"))
    floors = results[results.metric == "sanity_floor"]
    floors = floors.assign(similarity=floors.similarity.astype(object).where(floors.similarity.notna(), "-"))
    order = list(dict.fromkeys(df.stage))
    keys = [c for c in _by(df) if c != "job"]
    floor_of = {}
    for key, group in floors.groupby(keys, dropna=False, sort=False):
        low, high = bootstrap_ci(group.value.to_numpy(), n_resamples)
        floor_of[key if isinstance(key, tuple) else (key,)] = (group.value.mean(), low, high)
    out = []
    for key, group in df.groupby(keys + ["stage"], dropna=False, sort=False):
        low, high = bootstrap_ci(group.value.to_numpy(), n_resamples)
        floor, floor_low, floor_high = floor_of.get(tuple(key[:-1]), (np.nan, np.nan, np.nan))
        out.append({**dict(zip(keys + ["stage"], key)), "sanity_rho": group.value.mean(), "ci_low": low,
                    "ci_high": high, "n": len(group), "cascade": order.index(key[-1]), "floor": floor,
                    "floor_ci_low": floor_low, "floor_ci_high": floor_high,
                    "verdict": sanity_verdict(low, high, floor, line)})
    return pd.DataFrame(out).sort_values(keys + ["cascade"]).reset_index(drop=True)


def sanity_verdict(ci_low: float, ci_high: float, floor: float = np.nan, line: float = SANITY_LINE) -> str:
    """``passes`` / ``fails`` / ``undecided`` for a sanity ρ's CI against ``line`` (see :func:`sanity_table`)."""
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return "undecided (fewer than 2 items)"
    if ci_low > line:
        return "fails"
    if ci_high < line:
        return "passes" if not np.isfinite(floor) or floor > line else "undecided (noise floor below the line)"
    return "undecided"


def reliability_table(results: pd.DataFrame, num_steps: int, n_resamples: int = 10_000) -> pd.DataFrame:
    """Per configuration and phase: the sampled maps' Monte-Carlo reliability (``mc_reliability``: mean, bootstrap
    95 % CI, minimum over items) and the draws used (``n_masks_used`` / ``n_samples_used``). Deterministic maps have
    reliability 1 and no rows."""
    df = results[results.metric.isin(["mc_reliability", "n_masks_used", "n_samples_used"])]
    if df.empty:
        return pd.DataFrame()
    df = with_phase(df, num_steps)
    keys = [c for c in _by(df) if c != "job"] + ["phase"]
    out = []
    for key, group in df.groupby(keys, observed=True, dropna=False):
        rec = dict(zip(keys, key))
        rel = group[group.metric == "mc_reliability"].value.to_numpy()
        low, high = bootstrap_ci(rel, n_resamples)
        rec.update({"mc_reliability": float(np.mean(rel)) if len(rel) else np.nan, "mc_reliability_ci_low": low,
                    "mc_reliability_ci_high": high, "mc_reliability_min": float(np.min(rel)) if len(rel) else np.nan,
                    "n": len(rel)})
        for metric in ("n_masks_used", "n_samples_used"):
            used = group[group.metric == metric].value
            if not used.empty:
                rec[metric] = float(used.mean())
        out.append(rec)
    return pd.DataFrame(out)


def controls_table(auc: pd.DataFrame) -> pd.DataFrame:
    """The verdict at a glance, from :func:`auc_table`: per explainer and phase, the share of items won on both games
    and the paired AUC differences against random and each control, and the verdict."""
    if auc.empty or "verdict" not in auc:
        return pd.DataFrame()
    rows = auc[auc.verdict.notna()]
    keys = [c for c in ("target", "explainer", "similarity", "phase") if c in rows]
    cols = [*keys, "n"]
    for pre in ["", *(f"{c}_" for c in CONTROLS)]:
        cols += [f"{pre}both_win_share", f"{pre}deletion_diff", f"{pre}insertion_diff"]
    cols += ["beats_random", "beats_input_controls", "beats_randomised", "verdict"]
    return rows[[c for c in cols if c in rows]].reset_index(drop=True)


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
    auc = paper_auc_table(results, num_steps) if protocol == "paper" else auc_table(results, num_steps, n_resamples)
    out = {"auc": auc, "controls": controls_table(auc) if protocol != "paper" else pd.DataFrame(),
           "localisation": localisation_table(results, num_steps), "sanity": sanity_table(results, n_resamples),
           "reliability": reliability_table(results, num_steps, n_resamples),
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
