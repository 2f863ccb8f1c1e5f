"""The LightningModule: ``predict_step`` runs the configured pipeline on a batch of items."""

from __future__ import annotations

import lightning as L

from diffexplain.pipelines.base import ItemOutput, Pipeline


class ExplainModule(L.LightningModule):
    """Holds the pipeline's model and the pipeline; Lightning places it on each device (DDP: one rank per device).

    ``None`` items are the padding that gives every rank the same number of batches; they are skipped.
    """

    def __init__(self, model, pipeline: Pipeline):
        super().__init__()
        self.model_ = model
        self.pipeline = pipeline

    def on_predict_start(self) -> None:
        self.model_.to(self.device)

    def predict_step(self, batch: list, batch_idx: int) -> list[ItemOutput]:
        return [self.pipeline.process(self.model_, item) for item in batch if item is not None]
