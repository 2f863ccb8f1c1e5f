"""``OutputWriter``: writes the output contract atomically, resumably, and logs it (W&B, CSV).

Each finished item is saved at once as a shard under ``.partial/`` (so a dying run loses nothing and a re-run
in the same directory resumes); when all items are done, rank 0 merges the shards into ``results.parquet``,
``heatmaps.npz``, ``images.npz``, ``run.json`` and ``figures/``, then removes the shards.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import lightning as L

from diffexplain import io
from diffexplain.pipelines.base import ItemOutput, Pipeline
from diffexplain.reporting.tables import to_frame
from diffexplain.runner.data import PromptItem

CSV_MAX_ROWS = 100_000


class OutputWriter(L.Callback):
    def __init__(self, out_dir: str | Path, pipeline: Pipeline, items: list[PromptItem], run_info: dict):
        self.out_dir = Path(out_dir)
        self.partial = self.out_dir / ".partial"
        self.pipeline, self.items, self.run_info = pipeline, items, run_info
        self.start = time.time()

    def _shard(self, prompt_id: str) -> Path:
        return self.partial / f"{prompt_id}.pkl"

    def done_ids(self) -> set[str]:
        """Items an earlier, interrupted run in this directory already finished."""
        return {p.stem for p in self.partial.glob("*.pkl")} if self.partial.is_dir() else set()

    def on_predict_batch_end(self, trainer, pl_module, outputs: list[ItemOutput], batch, batch_idx, dataloader_idx=0):
        for out in outputs:
            io.write_pickle(self._shard(out.item.prompt_id), out)

    def on_predict_end(self, trainer, pl_module) -> None:
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            self.finalize(trainer)
        trainer.strategy.barrier()

    def finalize(self, trainer: L.Trainer | None = None) -> None:
        """Merge every item's shard into the contract's files, draw figures, log, and clean up."""
        outputs = [io.read_pickle(self._shard(it.prompt_id)) for it in self.items]
        rows = [r for o in outputs for r in o.rows]
        heatmaps = {k: v for o in outputs for k, v in o.heatmaps.items()}
        images = {k: v for o in outputs for k, v in o.images.items()}
        timesteps = outputs[0].timesteps if outputs else []
        df = to_frame(rows)

        io.write_npz(self.out_dir / "heatmaps.npz", heatmaps)
        io.write_npz(self.out_dir / "images.npz", images)
        with io.atomic_path(self.out_dir / "results.parquet") as tmp:
            df.to_parquet(tmp, index=False)
        if len(df) <= CSV_MAX_ROWS:
            with io.atomic_path(self.out_dir / "results.csv") as tmp:
                df.to_csv(tmp, index=False)
        figures = self.pipeline.figures(outputs, heatmaps, images, self.out_dir / "figures")
        info = dict(self.run_info)
        info.update(
            timesteps=timesteps,
            items=[dict(it.as_dict(), timesteps=o.timesteps, seconds=round(o.seconds, 4))
                   for it, o in zip(self.items, outputs)],
            wall_seconds={"job": round(time.time() - self.start, 3),
                          "items": round(sum(o.seconds for o in outputs), 3)},
            figures=[str(p.relative_to(self.out_dir)) for p in figures],
        )
        io.write_json(self.out_dir / "run.json", info)
        if trainer is not None:
            self._log(trainer, df, figures)
        shutil.rmtree(self.partial, ignore_errors=True)

    @staticmethod
    def _log(trainer: L.Trainer, df, figures: list[Path]) -> None:
        from lightning.pytorch.loggers import WandbLogger

        means = df.groupby(["metric"], dropna=False)["value"].mean()
        summary = {f"mean/{metric}": float(v) for metric, v in means.items()}
        for logger in trainer.loggers:
            if summary:
                logger.log_metrics(summary)
            if isinstance(logger, WandbLogger):
                if figures:
                    logger.log_image(key="figures", images=[str(p) for p in figures],
                                     caption=[p.stem for p in figures])
                logger.log_table(key="results", dataframe=df.head(10_000).astype(object).where(df.notna(), None))
            logger.finalize("success")
