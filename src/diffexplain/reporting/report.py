"""The report of a sweep (or of one run): the ablation table, cross-explainer correlations and figures.

``build(sweep_dir)`` reads every finished job under ``sweep_dir`` (a directory with ``run.json``; failed jobs leave
``failed.json``), labels each job by the config keys that vary across the sweep, and writes into ``sweep_dir``:

- ``summary.parquet`` (+ .csv): one row per configuration and phase (trajectory third): deletion and insertion AUC with
  bootstrap 95 % CIs, win share and mean difference vs ``random`` on the same items, localisation against the Shapes
  objects, sanity ρ at full randomisation;
- ``report.md``: that table, the paired comparisons, cross-explainer correlations, token roles, per-word
  localisation, failed and incompatible jobs, and the figures (``report/*.png``): the similarity ablation (paper A's
  Fig. 5 form: AUC per similarity), heatmaps of every configuration side by side for one prompt, the
  cross-explainer correlation matrix;
- where the jobs span 2 or more architectures (:mod:`~diffexplain.reporting.architectures`): the section "Two
  architectures side by side", its numbers in ``architectures.csv`` and ``architecture_words.csv`` and its figures
  (``report/architectures_*.png``).

Jobs whose prompts, seeds or steps differ are listed, and correlations use only what two jobs share. Jobs with the same
results (the same ``fingerprint`` of the config that affects results, and the same items: e.g. DF-CAM under two
similarities it does not use; the later one reused the earlier one's files) are one configuration, named by both
jobs; labels read only the config the results depend on (``run.json``'s ``unused`` nodes are left out).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from diffexplain import io
from diffexplain.metrics.correlation import pearson, spearman
from diffexplain.metrics.stats import bootstrap_ci
from diffexplain.reporting import architectures, evaluation

IGNORED = ("paths", "logger", "runner", "hydra", "resume", "output", "sweep_dir", "data.prompts", "data.num_prompts",
           "data.seeds", "data.batch_size", "pipeline.explainer", "pipeline.similarity", "pipeline.evaluate",
           "pipeline.models_dir", "explainer._partial_")


@dataclass
class Job:
    """A finished job of the sweep."""

    name: str
    path: Path
    info: dict
    results: pd.DataFrame
    label: str = ""
    settings: dict = field(default_factory=dict)
    twins: list[str] = field(default_factory=list)  # other jobs of the sweep with the same results

    @property
    def names(self) -> str:
        """This job's name and its twins' (``"0, 1"``)."""
        return ", ".join([self.name, *self.twins])

    @property
    def unused(self) -> set[str]:
        """Top-level config nodes its results do not depend on (``run.json``'s ``unused``)."""
        return set(self.info.get("unused") or [])

    @property
    def similarity(self) -> str | None:
        """The similarity choice, where the results depend on it."""
        return None if "similarity" in self.unused else self.info.get("choices", {}).get("similarity")

    @property
    def items(self) -> frozenset:
        return frozenset((it.get("prompt_id", it.get("item_id")), it.get("seed")) for it in self.info.get("items", []))

    @property
    def num_steps(self) -> int:
        return len(self.info.get("timesteps", [])) or int(self.results.step_index.max() + 1)

    @property
    def steps(self) -> list[int]:
        return list(self.info.get("steps") or [])


@dataclass
class Report:
    summary: pd.DataFrame
    tables: dict[str, pd.DataFrame]
    figures: list[Path]
    failed: list[str]
    notes: list[str]
    path: Path


def _flatten(d: dict, prefix: str = "") -> dict:
    """Dotted keys of a nested config; lists become JSON strings (comparable, hashable)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, key + "."))
        else:
            out[key] = json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v
    return out


def find_jobs(root: Path) -> tuple[list[Path], list[Path]]:
    """Finished job directories (``run.json``) and failed ones (``failed.json``) under ``root`` (itself included)."""
    finished = sorted({p.parent for p in root.rglob("run.json") if not _hidden(p, root)}, key=_order)
    failed = sorted({p.parent for p in root.rglob("failed.json") if not _hidden(p, root)}, key=_order)
    return finished, failed


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") or part == "wandb" for part in path.relative_to(root).parts[:-1])


def _order(p: Path):
    return (len(p.name), p.name) if p.name.isdigit() else (99, str(p))


def load_jobs(root: Path) -> list[Job]:
    """The finished jobs with results, one per distinct result (twins: the same fingerprint and items, listed on the
    first), labelled."""
    jobs: list[Job] = []
    first: dict[tuple, Job] = {}
    for path in find_jobs(root)[0]:
        name = "." if path == root else str(path.relative_to(root))
        info = io.read_json(path / "run.json")
        key = (info.get("fingerprint"), tuple(it.get("item_id", it.get("prompt_id")) for it in info.get("items", [])))
        if key[0] is not None and key in first:
            first[key].twins.append(name)
            continue
        run = io.load_run(path)
        results = run.results
        if results.empty:
            continue
        jobs.append(Job(name, path, run.info, results))
        if key[0] is not None:
            first[key] = jobs[-1]
    label_jobs(jobs)
    return jobs


def label_jobs(jobs: list[Job]) -> None:
    """Label each job by its choices and the config keys that vary: explainer options among the jobs of the same
    explainer, other keys across the sweep (``rise target=x0 masks=grid``, ``cam sim=ssim``)."""
    flat = [{k: v for k, v in _flatten(j.info.get("config", {})).items()
             if not any(k == i or k.startswith(i + ".") for i in (*IGNORED, *j.unused)) and not k.endswith("_target_")}
            for j in jobs]

    def varying(indices: list[int], keep) -> list[str]:
        keys = set().union(*[flat[i] for i in indices]) if indices else set()
        return sorted(k for k in keys
                      if keep(k) and len({json.dumps(flat[i].get(k), default=str) for i in indices}) > 1)

    everyone = list(range(len(jobs)))
    shared = varying(everyone, lambda k: not k.startswith(("explainer.", "pipeline.")))
    by_explainer: dict = {}
    for i, job in enumerate(jobs):
        by_explainer.setdefault(job.info.get("choices", {}).get("explainer"), []).append(i)
    for i, job in enumerate(jobs):
        choices = job.info.get("choices", {})
        own = varying(by_explainer[choices.get("explainer")], lambda k: k.startswith("explainer."))
        job.settings = {k: flat[i].get(k) for k in [*own, *shared]}
        head = choices.get("explainer") if job.info.get("explainer") else job.info.get("pipeline", job.name)
        sim = job.similarity if len({j.similarity for j in jobs if j.similarity is not None}) > 1 else None
        parts = [f"{k.removeprefix('explainer.')}={flat[i].get(k)}" for k in own if flat[i].get(k) is not None]
        parts += [f"{k}={flat[i].get(k)}" for k in shared
                  if not k.startswith("similarity.") and flat[i].get(k) is not None]
        job.label = " ".join([str(head), *([f"sim={sim}"] if sim else []), *parts]) or job.name


def combined(jobs: list[Job]) -> pd.DataFrame:
    """Every job's rows with ``job``, ``label`` and ``target`` columns and the phase of each step."""
    frames = []
    for job in jobs:
        target = job.info.get("config", {}).get("explainer", {}).get("target")
        df = job.results.assign(job=job.name, label=job.label, target=target)
        frames.append(evaluation.with_phase(df, job.num_steps) if "step_index" in df else df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def ablation_table(jobs: list[Job], n_resamples: int) -> pd.DataFrame:
    """One row per job configuration and phase (the report's summary)."""
    rows = []
    for job in jobs:
        target = job.info.get("config", {}).get("explainer", {}).get("target")
        explainer = (job.info.get("explainer") or {}).get("name")
        if explainer is None:  # a job without an explainer (generate, train_world)
            continue
        auc = evaluation.auc_table(job.results, job.num_steps, n_resamples)
        loc = evaluation.localisation_table(job.results, job.num_steps)
        rel = evaluation.reliability_table(job.results, job.num_steps, n_resamples)
        sanity = evaluation.sanity_table(job.results, n_resamples)
        for phase in evaluation.PHASES:
            rec = {"job": job.names, "label": job.label, "explainer": explainer, "target": target,
                   "similarity": job.similarity, "phase": phase, **job.settings}
            bare = len(rec)
            for table in (auc, loc):
                if not table.empty:
                    sel = table[(table.explainer.astype(str) == str(explainer)) & (table.phase.astype(str) == phase)]
                    if not sel.empty:
                        rec.update({k: v for k, v in sel.iloc[0].items() if k not in ("explainer", "similarity",
                                                                                       "phase")})
            for ref in () if auc.empty else evaluation.REFERENCES:  # random's and the controls' AUCs on the same items
                base = auc[(auc.explainer == ref) & (auc.phase.astype(str) == phase)]
                if not base.empty:
                    rec[f"{ref}_deletion_auc"] = base.iloc[0].deletion_auc
                    rec[f"{ref}_insertion_auc"] = base.iloc[0].insertion_auc
            if not rel.empty:
                sel = rel[(rel.explainer.astype(str) == str(explainer)) & (rel.phase.astype(str) == phase)]
                if not sel.empty:
                    rec.update({k: sel.iloc[0][k] for k in ("mc_reliability", "mc_reliability_min", "n_masks_used",
                                                            "n_samples_used") if k in sel})
            if len(rec) == bare:  # no step of this phase was explained
                continue
            if not sanity.empty:  # over the job's explained steps, shown beside each phase that has some
                last = sanity[sanity.cascade == sanity.cascade.max()]
                rec["sanity_rho_full"] = float(last.sanity_rho.mean())
                rec.update({f"sanity_{k}": last.iloc[0][k] for k in ("ci_low", "ci_high", "floor", "verdict")})
            rows.append(rec)
    return pd.DataFrame(rows)


def _maps(job: Job) -> dict[tuple[str, int], np.ndarray]:
    """A job's explainer maps per (item, step), summed over words for per-token explainers."""
    path = job.path / "heatmaps.npz"
    if not path.is_file():
        return {}
    out: dict[tuple[str, int], np.ndarray] = {}
    with np.load(path) as npz:
        for key in npz.files:
            parts = key.split("/")
            if len(parts) < 3 or not parts[2].isdigit():
                continue
            k = (parts[0], int(parts[2]))
            out[k] = out[k] + npz[key] if k in out else npz[key].astype(np.float32)
    return out


def cross_correlations(jobs: list[Job], n_resamples: int) -> pd.DataFrame:
    """Spearman and Pearson between every pair of jobs' maps on the (prompt, step) pairs they share, mean and
    bootstrap 95 % CI over those pairs."""
    maps = {j.name: _maps(j) for j in jobs}
    rows = []
    for a, b in itertools.combinations([j for j in jobs if maps[j.name]], 2):
        shared = sorted(set(maps[a.name]) & set(maps[b.name]))
        if not shared:
            continue
        for method, fn in (("spearman", spearman), ("pearson", pearson)):
            values = np.array([fn(maps[a.name][k], maps[b.name][k]) for k in shared], dtype=np.float64)
            low, high = bootstrap_ci(values, n_resamples)
            rows.append({"a": a.label, "b": b.label, "method": method, "mean": float(np.nanmean(values)),
                         "ci_low": low, "ci_high": high, "n": int(np.isfinite(values).sum())})
    return pd.DataFrame(rows)


def consistency_notes(jobs: list[Job]) -> list[str]:
    """Jobs whose prompts/seeds or explained steps differ from the first job's."""
    if not jobs:
        return []
    notes = []
    first = jobs[0]
    for job in jobs[1:]:
        if job.items != first.items:
            notes.append(f"job {job.name} ({job.label}) has other prompts/seeds than job {first.name}: "
                         f"{len(job.items & first.items)} of {len(job.items)} shared; comparisons across them use "
                         "only shared items")
        elif job.steps and first.steps and job.steps != first.steps:
            notes.append(f"job {job.name} ({job.label}) explains steps {job.steps}, job {first.name} {first.steps}")
    return notes


def failed_jobs(root: Path) -> list[str]:
    out = []
    for path in find_jobs(root)[1]:
        info = json.loads((path / "failed.json").read_text())
        out.append(f"job {path.relative_to(root)} ({' '.join(info.get('overrides', []))}): {info.get('error')}")
    return out


def build(root: str | Path, n_resamples: int = 10_000) -> Report:
    """Write the report of ``root`` (a multirun directory or one run) into it; see the module docstring."""
    from diffexplain.reporting import report_figures

    root = Path(root)
    jobs = load_jobs(root)
    failed = failed_jobs(root)
    notes = consistency_notes(jobs)
    summary = ablation_table(jobs, n_resamples)
    rows = combined(jobs)
    tables = {"summary": summary, "cross_explainer": cross_correlations(jobs, n_resamples)}
    if not rows.empty:
        tables["token_roles"] = token_roles(rows)
        tables["word_localisation"] = word_localisation(rows)
    tables["architectures"] = architectures.side_by_side(jobs, summary)
    tables["architecture_words"] = architectures.word_side_by_side(jobs, rows, n_resamples)
    tables = {k: v for k, v in tables.items() if v is not None and not v.empty}
    fig_dir = root / "report"
    figures = report_figures.draw(jobs, summary, tables, rows, fig_dir)
    with io.atomic_path(root / "summary.parquet") as tmp:
        summary.to_parquet(tmp, index=False)
    with io.atomic_path(root / "summary.csv") as tmp:
        summary.to_csv(tmp, index=False)
    for name in ("architectures", "architecture_words"):
        if name in tables:
            with io.atomic_path(root / f"{name}.csv") as tmp:
                tables[name].to_csv(tmp, index=False)
    report = Report(summary, tables, figures, failed, notes, root / "report.md")
    with io.atomic_path(report.path) as tmp:
        tmp.write_text(markdown(report, jobs, root))
    return report


def token_roles(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean role share of the words' attention per configuration, phase and role."""
    df = rows[rows.metric == "role_share"]
    if df.empty:
        return pd.DataFrame()
    return (df.groupby(["label", "phase", "token"], observed=True)["value"].mean().unstack("token").reset_index()
            .rename_axis(columns=None))


def word_localisation(rows: pd.DataFrame) -> pd.DataFrame:
    """Per configuration, word and phase: pointing game and share of maps with more saliency inside the word's
    object."""
    df = rows[rows.metric.isin(["pointing_game", "saliency_inside", "saliency_outside"]) & rows.token.notna()]
    if df.empty:
        return pd.DataFrame()
    wide = df.pivot_table(index=["label", "prompt_id", "step_index", "phase", "token"], columns="metric",
                          values="value", observed=True).reset_index()
    wide["inside_gt_outside"] = (wide.saliency_inside > wide.saliency_outside).astype(float)
    return (wide.groupby(["label", "token", "phase"], observed=True)
            .agg(pointing_game=("pointing_game", "mean"), inside_gt_outside=("inside_gt_outside", "mean"),
                 maps=("pointing_game", "size")).reset_index())


def _md(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    return df.to_markdown(index=False, floatfmt=floatfmt) if not df.empty else "(none)"


AUC_COLUMNS = ["label", "phase", "n", "deletion_auc", "deletion_ci_low", "deletion_ci_high", "random_deletion_auc",
               "deletion_win_share", "insertion_auc", "insertion_ci_low", "insertion_ci_high", "random_insertion_auc",
               "insertion_win_share", "both_win_share", "pointing_game", "iou_topk", "iou_chance", "mass_inside",
               "area_share", "mc_reliability", "n_masks_used", "n_samples_used", "sanity_rho_full", "sanity_ci_low",
               "sanity_ci_high", "sanity_floor", "sanity_verdict"]
CONTROL_COLUMNS = ["label", "phase", "n", "both_win_share", "magnitude_both_win_share", "magnitude_deletion_diff",
                   "magnitude_insertion_diff", "edges_both_win_share", "edges_deletion_diff", "edges_insertion_diff",
                   "randomised_both_win_share", "randomised_deletion_diff", "randomised_insertion_diff", "verdict"]


def controls_section(s: pd.DataFrame) -> list[str]:
    """The verdict beyond random: each configuration against the input-only controls and its randomised-model map,
    and one plain sentence for the sweep."""
    if "verdict" not in s or s.verdict.isna().all():
        return []
    rows = s[s.verdict.notna()]
    lines = ["## Beyond where the objects are: controls", "",
             "Every map is also compared, paired per item, with maps that need no explanation of the model: "
             "`magnitude` (Σ_c |z_t|) and `edges` (Sobel of z_t) — input-only — and `randomised` (the same explainer "
             "on the fully re-initialised UNet, played in the trained model's games). `*_both_win_share`: share of "
             "items where the map wins both games against that control; `*_diff`: mean paired AUC difference "
             "(explainer − control; deletion: negative is better, insertion: positive). The verdict needs the 95 % CI "
             "of the mean difference clear of 0 on both games against random and against every input-only control.",
             "", _md(rows[[c for c in CONTROL_COLUMNS if c in rows]]), ""]
    if "beats_input_controls" in rows:
        beyond = rows[rows.beats_input_controls == 1]
        if rows.beats_input_controls.isna().all():
            lines += ["Too few items for a verdict against the input-only controls.", ""]
        elif beyond.empty:
            lines += ["**No configuration beats the input-only controls on both games in any phase**: on these items "
                      "the games do not show that any of these maps explains the model beyond where the objects are.",
                      ""]
        else:
            lines += ["Configurations that beat the input-only controls on both games: "
                      + "; ".join(f"{r.label} ({r.phase})" for r in beyond.itertuples()) + ".", ""]
    return lines


def architectures_section(report: Report, root: Path) -> list[str]:
    """The configurations on each architecture side by side, the per-word localisation head to head and their
    figures (jobs spanning 2 or more architectures only)."""
    if "architectures" not in report.tables:
        return []
    long = report.tables["architectures"]
    lines = ["## Two architectures side by side", "",
             f"Architectures: {', '.join(f'`{a}`' for a in dict.fromkeys(long.architecture))} (the `model` choice and "
             "its family). Per configuration and phase, each measure's column per architecture: `both won`: share of "
             "items where the map beats `random` on both games; beats input controls / randomised: the verdict's "
             "CI of the mean paired AUC difference clear of 0 on both games against `magnitude` and `edges` / its "
             "randomised-model map; AUCs with bootstrap 95 % CIs over items; localisation against the prompted "
             "objects with its chance level; `–`: not measured on that architecture (ConceptAttention needs joint "
             "attention). Numbers: `architectures.csv`.", "", _md(architectures.table(long)), ""]
    if "architecture_words" in report.tables:
        lines += ["### Per word, head to head", "",
                  "Each word's map against its own object (the per-word explainers): top-k IoU and pointing game, "
                  "each item's (prompt, seed, step) mean over its words, mean and bootstrap 95 % CI over items. "
                  "Numbers: `architecture_words.csv`.", "",
                  _md(architectures.word_table(report.tables["architecture_words"])), ""]
    shown = [f"![{p.stem}]({p.relative_to(root)})" for p in report.figures if p.stem.startswith("architectures_")]
    return [*lines, *shown, ""] if shown else lines


def markdown(report: Report, jobs: list[Job], root: Path) -> str:
    n = sum(1 + len(j.twins) for j in jobs)
    distinct = f" ({len(jobs)} with distinct results)" if n > len(jobs) else ""
    lines = [f"# Report: {root}", "", f"{n} finished job(s){distinct}, {len(report.failed)} failed.", ""]
    if report.notes:
        lines += ["## Jobs that do not share items", "", *[f"- {n}" for n in report.notes], ""]
    if report.failed:
        lines += ["## Failed jobs", "", *[f"- {f}" for f in report.failed], ""]
    s = report.summary
    if not s.empty:
        cols = [c for c in AUC_COLUMNS if c in s]
        lines += ["## Ablation: faithfulness and localisation per configuration and phase", "",
                  "Deletion AUC: lower is better; insertion AUC: higher is better (y: similarity of the perturbed "
                  "outcome to the unperturbed one). CIs: bootstrap 95 % over items. Win share: share of items "
                  "(prompt, seed, step) where the map beats `random` on the same item. Localisation against the "
                  "prompted objects: chance levels `iou_chance` (IoU) and `area_share` (mass, pointing game).", "",
                  _md(s[cols]), ""]
        diff = [c for c in s if c.endswith(("_diff", "_diff_ci_low", "_diff_ci_high", "_p"))
                and c.startswith(("deletion", "insertion"))]
        if diff:
            lines += ["### Paired differences vs random (explainer − random, Wilcoxon p)", "",
                      _md(s[["label", "phase", *diff]]), ""]
        lines += controls_section(s)
    lines += architectures_section(report, root)
    names = {"cross_explainer": "Cross-explainer correlations (maps of the same prompt and step)",
             "token_roles": "Token roles: mean share of the words' attention per phase",
             "word_localisation": "Per-word localisation (each word's map vs its own object)"}
    for key, title in names.items():
        if key in report.tables:
            lines += [f"## {title}", "", _md(report.tables[key]), ""]
    figures = [p for p in report.figures if not p.stem.startswith("architectures_")]  # shown in their section
    if figures:
        lines += ["## Figures", "", *[f"![{p.stem}]({p.relative_to(root)})" for p in figures], ""]
    lines += ["## Jobs", "", _md(pd.DataFrame([{"job": j.names, "label": j.label, "items": len(j.items),
                                                "path": str(j.path.relative_to(root)) if j.path != root else "."}
                                               for j in jobs])), ""]
    twins = [f"- jobs {j.names} ({j.label})" for j in jobs if j.twins]
    if twins:
        lines += ["Jobs that differ only in settings their results do not use (e.g. `similarity` for DF-CAM on its "
                  "default target) have the same results and are listed once; a sweep computes them once (the later "
                  "job's `run.json` names the job it `reused`):", "", *twins, ""]
    return "\n".join(lines)
