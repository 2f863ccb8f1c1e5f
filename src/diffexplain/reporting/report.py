"""The report of a sweep (or of one run): the ablation table, cross-explainer correlations and figures.

``build(sweep_dir)`` reads every finished job under ``sweep_dir`` (a directory with ``run.json``; failed jobs leave
``failed.json``), labels each job by the config keys that vary across the sweep, and writes into ``sweep_dir``:

- ``summary.parquet`` (+ .csv): one row per configuration and phase (trajectory third): deletion and insertion AUC with
  bootstrap 95 % CIs, win share and mean difference vs ``random`` on the same items, localisation against the Shapes
  objects, sanity ρ at full randomisation;
- ``report.md``: that table, the paired comparisons, cross-explainer correlations, token roles, per-word
  localisation, failed and incompatible jobs, and the figures (``report/*.png``): the similarity ablation (paper A's
  Fig. 5 form: AUC per similarity), heatmaps of every configuration side by side for one prompt, the
  cross-explainer correlation matrix.

Jobs whose prompts, seeds or steps differ are listed, and correlations use only what two jobs share.
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
from diffexplain.reporting import evaluation

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
    jobs = []
    for path in find_jobs(root)[0]:
        run = io.load_run(path)
        results = run.results
        if results.empty:
            continue
        name = "." if path == root else str(path.relative_to(root))
        jobs.append(Job(name, path, run.info, results))
    label_jobs(jobs)
    return jobs


def label_jobs(jobs: list[Job]) -> None:
    """Label each job by its choices and the config keys that vary: explainer options among the jobs of the same
    explainer, other keys across the sweep (``rise target=x0 masks=grid``, ``cam sim=ssim``)."""
    flat = [{k: v for k, v in _flatten(j.info.get("config", {})).items()
             if not any(k == i or k.startswith(i + ".") for i in IGNORED) and not k.endswith("_target_")}
            for j in jobs]

    def varying(indices: list[int], keep) -> list[str]:
        keys = set().union(*[flat[i] for i in indices]) if indices else set()
        return sorted(k for k in keys if keep(k) and len({json.dumps(flat[i].get(k), default=str) for i in indices}) > 1)

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
        sim = choices.get("similarity") if _varies(jobs, "similarity") else None
        parts = [f"{k.removeprefix('explainer.')}={flat[i].get(k)}" for k in own if flat[i].get(k) is not None]
        parts += [f"{k}={flat[i].get(k)}" for k in shared if not k.startswith("similarity.") and flat[i].get(k) is not None]
        job.label = " ".join([str(head), *([f"sim={sim}"] if sim else []), *parts]) or job.name


def _varies(jobs: list[Job], group: str) -> bool:
    return len({j.info.get("choices", {}).get(group) for j in jobs}) > 1


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
        sanity = evaluation.sanity_table(job.results, n_resamples)
        for phase in evaluation.PHASES:
            rec = {"job": job.name, "label": job.label, "explainer": explainer, "target": target,
                   "similarity": job.info.get("choices", {}).get("similarity"), "phase": phase, **job.settings}
            for table in (auc, loc):
                if not table.empty:
                    sel = table[(table.explainer.astype(str) == str(explainer)) & (table.phase.astype(str) == phase)]
                    if not sel.empty:
                        rec.update({k: v for k, v in sel.iloc[0].items() if k not in ("explainer", "similarity",
                                                                                       "phase")})
            if not auc.empty:
                base = auc[(auc.explainer == "random") & (auc.phase.astype(str) == phase)]
                if not base.empty:
                    rec["random_deletion_auc"] = base.iloc[0].deletion_auc
                    rec["random_insertion_auc"] = base.iloc[0].insertion_auc
            if not sanity.empty:
                last = sanity[sanity.cascade == sanity.cascade.max()]
                rec["sanity_rho_full"] = float(last.sanity_rho.mean())
            if len(rec) > 7 + len(job.settings):
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
    tables = {k: v for k, v in tables.items() if v is not None and not v.empty}
    fig_dir = root / "report"
    figures = report_figures.draw(jobs, summary, tables.get("cross_explainer"), rows, fig_dir)
    with io.atomic_path(root / "summary.parquet") as tmp:
        summary.to_parquet(tmp, index=False)
    with io.atomic_path(root / "summary.csv") as tmp:
        summary.to_csv(tmp, index=False)
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
    """Per configuration, word and phase: pointing game and share of maps with more saliency inside the word's object."""
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
               "area_share", "sanity_rho_full"]


def markdown(report: Report, jobs: list[Job], root: Path) -> str:
    lines = [f"# Report: {root}", "", f"{len(jobs)} finished job(s), {len(report.failed)} failed.", ""]
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
        diff = [c for c in s if c.endswith(("_diff", "_diff_ci_low", "_diff_ci_high", "_p"))]
        if diff:
            lines += ["### Paired differences vs random (explainer − random, Wilcoxon p)", "",
                      _md(s[["label", "phase", *diff]]), ""]
    names = {"cross_explainer": "Cross-explainer correlations (maps of the same prompt and step)",
             "token_roles": "Token roles: mean share of the words' attention per phase",
             "word_localisation": "Per-word localisation (each word's map vs its own object)"}
    for key, title in names.items():
        if key in report.tables:
            lines += [f"## {title}", "", _md(report.tables[key]), ""]
    if report.figures:
        lines += ["## Figures", "", *[f"![{p.stem}]({p.relative_to(root)})" for p in report.figures], ""]
    lines += ["## Jobs", "", _md(pd.DataFrame([{"job": j.name, "label": j.label, "items": len(j.items),
                                                "path": str(j.path.relative_to(root)) if j.path != root else "."}
                                               for j in jobs])), ""]
    return "\n".join(lines)
