"""The job's progress bar: one bar per job that counts *work* (explained steps, games, DF-RISE mask batches), not
items, so it moves every few seconds, with the time left in readable units (``3m 20s``).

The pipeline says how many units one item takes (:meth:`Pipeline.work_units`) and reports them as it goes
(:meth:`Pipeline.report`, fed by the explainers' ``progress`` callable); this callback sets the bar's total to the
rank's items × units and advances it on each report. Wired in by ``conf/runner/*.yaml`` (``callbacks``), which
replaces Lightning's own bar (one tick per item).
"""

from __future__ import annotations

import math
import sys
import time

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm, TQDMProgressBar


def readable_duration(seconds: float | None) -> str:
    """``45s``, ``3m 20s``, ``1h 02m``, ``2d 03h``; ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds in (float("inf"), float("-inf")) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}h"


class _Bar(Tqdm):
    """tqdm with the elapsed and remaining time in readable units (``{spent}``, ``{left}``) and whole units done."""

    @property
    def format_dict(self):
        d = super().format_dict
        n, total, elapsed = d["n"], d["total"], d["elapsed"]
        d["spent"] = readable_duration(elapsed)
        d["left"] = readable_duration((total - n) * elapsed / n) if n > 0 and total else "?"
        d["done"] = f"{int(n + 1e-6)}"
        return d


class WorkProgressBar(TQDMProgressBar):
    """One bar for ``trainer.predict`` that counts work units, e.g.
    ``evaluate  35%|███▌      | 14/40 steps [1m 05s spent, 2m 00s left, item 2/4]``.

    Its total starts at the rank's items × :meth:`Pipeline.work_units` and follows what items really report (the mean
    per finished item; grown when the current item reports more); an item that reports nothing counts its estimate
    when it ends. Disabled on ranks > 0 (Lightning disables progress bars there).
    """

    BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {done}/{total_fmt} {unit} [{spent} spent, {left} left{postfix}]"

    def __init__(self, min_interval_s: float = 0.5):
        super().__init__(refresh_rate=1, leave=True)
        self.min_interval_s = float(min_interval_s)
        self.pipeline = None
        self.estimate = 1.0   # units per item before any item finished
        self.items = 0        # this rank's items
        self.items_done = 0
        self.done = 0.0       # units done
        self._item_start = 0.0
        self._shown = 0.0

    @property
    def predict_description(self) -> str:
        return getattr(self.pipeline, "name", "predict")

    @property
    def per_item(self) -> float:
        """Units per item: the mean of the finished items, else the pipeline's estimate."""
        return self._item_start / self.items_done if self.items_done else self.estimate

    @property
    def total(self) -> int:
        left = max(self.items - self.items_done - 1, 0) * self.per_item
        current = max(self.done - self._item_start, self.per_item) if self.items_done < self.items else 0.0
        return max(math.ceil(self._item_start + current + left - 1e-6), 1)

    def init_predict_tqdm(self) -> Tqdm:
        return _Bar(desc=self.predict_description, position=2 * self.process_position, disable=self.is_disabled,
                    leave=True, dynamic_ncols=True, file=sys.stdout, smoothing=0, bar_format=self.BAR_FORMAT,
                    unit="steps", total=self.total)

    def on_predict_start(self, trainer, pl_module) -> None:
        self.pipeline = getattr(pl_module, "pipeline", None)
        loaders = trainer.predict_dataloaders
        loaders = loaders if isinstance(loaders, (list, tuple)) else [] if loaders is None else [loaders]
        self.items = sum(sum(item is not None for item in getattr(loader, "dataset", [])) for loader in loaders)
        self.estimate = float(self.pipeline.work_units()) if hasattr(self.pipeline, "work_units") else 1.0
        self.items_done, self.done, self._item_start, self._shown = 0, 0.0, 0.0, 0.0
        super().on_predict_start(trainer, pl_module)  # creates the bar
        self._draw(f"item 1/{self.items}" if self.items else "")
        if self.pipeline is not None:
            self.pipeline.progress = self.advance

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        """Lightning's bar resets itself per dataloader to count batches: this one keeps counting work."""

    def advance(self, units: float) -> None:
        """``units`` more work done (called by the pipeline as it goes); redrawn at most every ``min_interval_s``."""
        self.done += units
        if time.monotonic() - self._shown >= self.min_interval_s:
            self._draw()

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        finished = sum(item is not None for item in batch)
        if finished and self.done <= self._item_start:  # the pipeline reported nothing: count its estimate
            self.done += self.estimate * finished
        self.items_done += finished
        self._item_start = self.done
        more = self.items_done < self.items
        plural = "s" * (self.items != 1)
        self._draw(f"item {self.items_done + 1}/{self.items}" if more else f"{self.items} item{plural}")

    def _draw(self, postfix: str | None = None) -> None:
        bar = self._predict_progress_bar
        self._shown = time.monotonic()
        if bar is None or bar.disable:
            return
        bar.total = self.total
        bar.n = min(self.done, bar.total)
        if postfix is not None:
            bar.set_postfix_str(postfix, refresh=False)
        bar.refresh()

    def on_predict_end(self, trainer, pl_module) -> None:
        if self.pipeline is not None:
            vars(self.pipeline).pop("progress", None)  # back to the class's no-op
        super().on_predict_end(trainer, pl_module)


def progress_bar(enabled: bool = True, min_interval_s: float = 0.5) -> Callback:
    """The job's bar (``conf/runner/*.yaml``), or a no-op callback when ``runner.enable_progress_bar=false`` (Lightning
    refuses a progress-bar callback with its bar disabled)."""
    return WorkProgressBar(min_interval_s) if enabled else Callback()
