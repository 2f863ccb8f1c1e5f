"""``OutputWriter``: writes the output contract atomically and resumably, streaming item by item, and logs it.

Each finished item is saved at once as a shard directory ``.partial/<item_id>/`` (``rows.parquet``, ``heatmaps.npz``,
``images/*.webp``, then ``meta.json`` with the config fingerprint — a shard without a readable ``meta.json`` is not
finished). A re-run in the same directory resumes: it checks that the config that affects results is the same
(:mod:`~diffexplain.runner.resume`), skips finished items, and recomputes a corrupt shard after saying so. When all
items are done, rank 0 streams the shards one by one into ``results.parquet`` (+ ``results.csv`` when small),
``heatmaps.npz``, ``images/`` and ``figures/``, writes ``run.json`` last (the run's completion mark) and removes the
shards; memory holds one item at a time, plus the job's summary rows (per-point curves reduced to mean curves).

In a sweep, a job whose fingerprint and items equal those of a finished job of the same sweep (its *twin*, e.g. DF-CAM
with another ``similarity=`` it does not use) computes nothing: :meth:`OutputWriter.reuse` hard-links (or copies) the
twin's files and writes a ``run.json`` of its own config naming the twin (``"reused": "<job>"``).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from diffexplain import io
from diffexplain.config.options import HEATMAP_DTYPES
from diffexplain.errors import UserError, check, shorten
from diffexplain.pipelines.base import ItemOutput, Pipeline
from diffexplain.reporting.figures import overlay
from diffexplain.reporting.tables import CURVE_METRICS, CurveMeans, to_frame
from diffexplain.runner.resume import NOT_RESULTS, RESUME, differing_keys, fingerprint, flatten, unused
from diffexplain.runner.wandb_log import log_job

log = logging.getLogger(__name__)
CSV_MAX_ROWS = 100_000
OUTPUTS = ("results.parquet", "results.csv", "heatmaps.npz", "images", "figures", "tables", "run.json", ".partial",
           "wandb")
REUSED = ("results.parquet", "results.csv", "heatmaps.npz", "images", "figures", "tables")  # what a twin's reuse takes


class OutputOptions:
    """``output.*``: what is stored per item (see conf/config.yaml)."""

    def __init__(self, x0_steps: str = "explained", x0_quality: int | None = 95, heatmap_dtype: str = "float32",
                 figures: int = 8):
        check(x0_quality is None or (isinstance(x0_quality, int) and 1 <= x0_quality <= 100), "output.x0_quality",
              x0_quality, "an integer in [1, 100] (WebP quality) or null (lossless)")
        check(heatmap_dtype in HEATMAP_DTYPES, "output.heatmap_dtype", heatmap_dtype, f"one of {list(HEATMAP_DTYPES)}")
        check(isinstance(figures, int) and figures >= 0, "output.figures", figures, "an integer >= 0")
        self.x0_steps, self.x0_quality, self.heatmap_dtype, self.figures = x0_steps, x0_quality, heatmap_dtype, figures


class OutputWriter(L.Callback):
    def __init__(self, out_dir: str | Path, pipeline: Pipeline, items: list, run_info: dict, config: dict,
                 options: OutputOptions | None = None):
        self.out_dir = Path(out_dir)
        self.partial = self.out_dir / ".partial"
        self.pipeline, self.items, self.run_info, self.config = pipeline, items, run_info, config
        self.options = options or OutputOptions()
        self.fingerprint = fingerprint(config)
        self.start = time.time()

    # -- resume -----------------------------------------------------------------------------------
    def prepare(self, resume: str = "auto", destructive: bool = True) -> set[str] | None:
        """Check what this directory holds. Returns the ids of finished items, or None when the whole job is already
        finished with this config (nothing to do). ``resume=overwrite`` clears earlier outputs first; a different
        config is refused with the differing keys. ``destructive=False`` (non-zero DDP ranks) never deletes."""
        check(resume in RESUME, "resume", resume, f"one of {list(RESUME)}")
        if resume == "overwrite" and destructive:
            self.clear()
        run_json = self.out_dir / "run.json"
        if run_json.is_file():
            info = io.read_json(run_json)
            changed = differing_keys(info.get("config", {}), self.config)
            ids = [it.get("item_id", it.get("prompt_id")) for it in info.get("items", [])]
            if not changed and ids == [it.item_id for it in self.items]:
                return None
            what = f"config (differs in {', '.join(changed[:6])})" if changed else "item list"
            raise UserError("hydra.run.dir", str(self.out_dir), f"it holds a finished run with another {what}; "
                            "rerun with resume=overwrite, or choose another directory")
        saved = self.partial / "config.json"
        if saved.is_file():
            try:
                old = io.read_json(saved)
            except ValueError:
                old = None
            changed = (differing_keys(old, self.config) if isinstance(old, dict)
                       else ["(unreadable .partial/config.json)"])
            if changed:
                raise UserError("hydra.run.dir", str(self.out_dir), "it holds unfinished items of another config "
                                f"(differs in {shorten(', '.join(changed), 200)}); rerun with resume=overwrite, or "
                                "choose another directory")
        elif destructive:
            io.write_json(saved, self.config)
        return self._finished_shards(destructive)

    def clear(self) -> None:
        """Remove every output of an earlier run in this directory (Hydra's own files stay)."""
        for name in OUTPUTS:
            path = self.out_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()

    def _finished_shards(self, destructive: bool) -> set[str]:
        done = set()
        for item_id in sorted({it.item_id for it in self.items}):
            shard = self.partial / item_id
            if not shard.exists():
                continue
            problem = self._shard_problem(shard)
            if problem is None:
                done.add(item_id)
            elif destructive:
                log.warning("saved item %s is unusable (%s); recomputing it", item_id, problem)
                shutil.rmtree(shard, ignore_errors=True)
        return done

    def _shard_problem(self, shard: Path) -> str | None:
        """Why a shard cannot be used (None if it can): unfinished, another config, or unreadable files."""
        try:
            meta = io.read_json(shard / "meta.json")
            if meta.get("fingerprint") != self.fingerprint:
                return "saved with another config"
            pq.read_metadata(shard / "rows.parquet")
            io.read_npz(shard / "heatmaps.npz")
        except FileNotFoundError as e:
            return f"{Path(e.filename).name} missing"
        except Exception as e:
            return f"{type(e).__name__}: {shorten(str(e), 80)}"
        return None

    # -- reuse within a sweep ---------------------------------------------------------------------
    def twin(self, sweep: Path) -> tuple[Path, dict] | None:
        """The first finished job of the sweep (in job order) with this job's fingerprint and items, with its
        ``run.json``; None if there is none. Jobs sit at this job's depth under ``sweep`` (``hydra.sweep.subdir``)."""
        try:
            rel = self.out_dir.resolve().relative_to(Path(sweep).resolve())
        except ValueError:
            return None
        if not rel.parts:
            return None
        ids = [it.item_id for it in self.items]
        found = Path(sweep).glob("/".join(["*"] * len(rel.parts)) + "/run.json")
        for run_json in sorted(found, key=lambda p: [(len(s), s) for s in p.parent.relative_to(sweep).parts]):
            job = run_json.parent
            if job.resolve() == self.out_dir.resolve() or any(s.startswith(".") for s in job.relative_to(sweep).parts):
                continue
            try:
                info = io.read_json(run_json)
            except (OSError, ValueError):
                continue
            if (isinstance(info, dict) and isinstance(info.get("config"), dict)
                    and [it.get("item_id", it.get("prompt_id")) for it in info.get("items", [])] == ids
                    and fingerprint(info["config"]) == self.fingerprint):
                return job, info
        return None

    def reuse(self, twin: Path, info: dict, name: str) -> None:
        """Make this job's outputs those of its finished ``twin`` (``info``: its ``run.json``): its result files
        hard-linked (or copied), then ``run.json`` with this job's own config, choices and versions, the twin's
        record of what it computed, and ``"reused": name``. Nothing is computed or logged."""
        for what in (*REUSED, ".partial"):
            path = self.out_dir / what
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        for what in REUSED:
            src = twin / what
            for f in sorted(src.rglob("*")) if src.is_dir() else [src]:
                if f.is_file():
                    _link(f, self.out_dir / f.relative_to(twin))
        own = dict(info, **self.run_info, config=self.config, fingerprint=self.fingerprint, unused=unused(self.config),
                   reused=name)
        own["wall_seconds"] = {"job": round(time.time() - self.start, 3), "items": 0.0}
        io.write_json(self.out_dir / "run.json", own)

    def why_same(self, info: dict) -> str:
        """What differs between this job's config and a twin's (``info``: its ``run.json``) that its results do not
        depend on: changed choices (``similarity=cosine vs ssim``), else the changed top-level nodes."""
        mine, theirs = self.run_info.get("choices", {}), info.get("choices", {})
        changed = [f"{k}={mine.get(k)} vs {theirs.get(k)}" for k in sorted(set(mine) | set(theirs))
                   if mine.get(k) != theirs.get(k)]
        if not changed:
            a, b = flatten(info.get("config") or {}), flatten(self.config)
            changed = sorted({k.split(".")[0] for k in set(a) | set(b) if a.get(k) != b.get(k)} - NOT_RESULTS)
        return f"{', '.join(changed) or 'the same config'}: unused by its results"

    # -- one item ---------------------------------------------------------------------------------
    def save(self, out: ItemOutput) -> None:
        """Save one finished item as a shard, atomically (a directory renamed into place)."""
        self.partial.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.partial, prefix=f".{out.item.item_id}."))
        try:
            to_frame(out.rows, self.pipeline.columns).to_parquet(tmp / "rows.parquet", index=False)
            io.write_npz(tmp / "heatmaps.npz",
                         {k: v.astype(self.options.heatmap_dtype) for k, v in out.heatmaps.items()})
            for key, image in out.images.items():
                quality = None if key.endswith("/final") else self.options.x0_quality
                io.write_image(tmp / "images" / f"{key}{io.IMAGE_SUFFIX}", image, quality)
            io.write_json(tmp / "meta.json", {"item": out.item.as_dict(), "timesteps": out.timesteps,
                                              "seconds": out.seconds, "fingerprint": self.fingerprint})
            final = self.partial / out.item.item_id
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def on_predict_batch_end(self, trainer, pl_module, outputs: list[ItemOutput], batch, batch_idx, dataloader_idx=0):
        for out in outputs:
            self.save(out)

    def on_predict_end(self, trainer, pl_module) -> None:
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            self.finalize(trainer)
        trainer.strategy.barrier()

    # -- the whole job ----------------------------------------------------------------------------
    def load(self, item) -> ItemOutput:
        """A saved item back as an :class:`ItemOutput` (from its shard)."""
        shard = self.partial / item.item_id
        meta = io.read_json(shard / "meta.json")
        heatmaps = io.read_npz(shard / "heatmaps.npz")
        images = dict(io.ImageFiles(shard / "images").items())
        return ItemOutput(item, meta["timesteps"], heatmaps=heatmaps, images=images, seconds=meta["seconds"])

    def finalize(self, trainer: L.Trainer | None = None) -> None:
        """Stream every item's shard into the contract's files, draw figures, log, and clean up."""
        schema = pa.Schema.from_pandas(to_frame([], self.pipeline.columns), preserve_index=False)
        items_info, item_seconds, figures, previews, curves, kept, n_rows = [], 0.0, [], [], CurveMeans(), [], 0
        fig_dir = self.out_dir / "figures"
        with io.atomic_path(self.out_dir / "results.parquet") as parquet_tmp, \
                io.NpzWriter(self.out_dir / "heatmaps.npz") as npz:
            with pq.ParquetWriter(parquet_tmp, schema) as parquet:
                for n, item in enumerate(self.items):
                    shard = self.partial / item.item_id
                    meta = io.read_json(shard / "meta.json")
                    rows = to_frame(pd.read_parquet(shard / "rows.parquet"), self.pipeline.columns)
                    parquet.write_table(pa.Table.from_pandas(rows, schema=schema, preserve_index=False))
                    curves.add(rows)
                    kept.append(rows[~rows.metric.isin(CURVE_METRICS)])
                    n_rows += len(rows)
                    with np.load(shard / "heatmaps.npz") as maps:
                        for key in maps.files:
                            npz.add(key, maps[key])
                    self._link_images(shard / "images")
                    if n < self.options.figures:
                        saved = self.load(item)
                        figures += self.pipeline.item_figures(saved, fig_dir)
                        previews += heatmap_previews(saved)
                    items_info.append(dict(item.as_dict(), item_id=item.item_id, timesteps=meta["timesteps"],
                                           seconds=round(meta["seconds"], 4)))
                    item_seconds += meta["seconds"]
        if n_rows <= CSV_MAX_ROWS:
            with io.atomic_path(self.out_dir / "results.csv") as tmp:
                pd.read_parquet(self.out_dir / "results.parquet").to_csv(tmp, index=False)
        # the job's tables, figures and W&B logs: every row but the per-point curves, which come as mean curves
        results = pd.concat([*kept, curves.rows(self.pipeline.columns)], ignore_index=True) if kept \
            else to_frame([], self.pipeline.columns)
        figures += self.pipeline.job_figures(results, fig_dir)
        tables = self.pipeline.tables(results)
        for name, table in tables.items():  # job-level summaries (also logged to W&B) are kept as files too
            with io.atomic_path(self.out_dir / "tables" / f"{name}.csv") as tmp:
                table.to_csv(tmp, index=False)
        info = dict(self.run_info, config=self.config, fingerprint=self.fingerprint, unused=unused(self.config))
        info.update(
            timesteps=items_info[0]["timesteps"] if items_info else [],
            items=items_info,
            wall_seconds={"job": round(time.time() - self.start, 3), "items": round(item_seconds, 3)},
            figures=[str(p.relative_to(self.out_dir)) for p in figures],
            tables=[f"tables/{name}.csv" for name in tables],
        )
        used = results.loc[results["metric"] == "batch_size_used", "value"] if "metric" in results else ()
        if len(used):  # batch_size=auto: the smallest batch that ran (out-of-memory halvings included)
            info["batch_size_used"] = int(used.min())
        if trainer is not None:
            log_job(trainer.loggers, results, tables, figures, previews)
        io.write_json(self.out_dir / "run.json", info)
        shutil.rmtree(self.partial, ignore_errors=True)

    def _link_images(self, shard_images: Path) -> None:
        """Hard-link (or copy) a shard's images into ``images/``; the shard keeps its own until it is removed."""
        if not shard_images.is_dir():
            return
        for src in shard_images.rglob(f"*{io.IMAGE_SUFFIX}"):
            dst = self.out_dir / "images" / src.relative_to(shard_images)
            dst.parent.mkdir(parents=True, exist_ok=True)
            _link(src, dst)


def _link(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (a copy where links are impossible), replacing ``dst``."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def heatmap_previews(out: ItemOutput, max_maps: int = 12) -> list[tuple[np.ndarray, str]]:
    """Up to ``max_maps`` of an item's heatmaps on its x0-prediction at that step (else its final image), each with a
    caption naming the prompt (or item), the explainer, the step and the word."""
    item_id = out.item.item_id
    final = out.images.get(f"{item_id}/final")
    label = getattr(out.item, "prompt", item_id)
    previews = []
    for key, heatmap in list(out.heatmaps.items())[:max_maps]:
        parts = key.split("/")[1:]
        step = parts[1] if len(parts) > 1 and parts[1].isdigit() else None
        image = out.images.get(f"{item_id}/x0/{step}", final) if step is not None else final
        if image is None or heatmap.ndim != 2:
            continue
        what = " | ".join([parts[0], *([f"step {step}"] if step else []), *parts[2:]])
        previews.append((overlay(image, heatmap), f"{label} | {what}"))
    return previews
