"""The LightningModule: ``predict_step`` runs the configured pipeline on a batch of prompt items."""

from __future__ import annotations

import lightning as L

from diffexplain.models import DiffusionModel
from diffexplain.pipelines.base import ItemOutput, Pipeline
from diffexplain.runner.data import PromptItem


class ExplainModule(L.LightningModule):
    """Holds the diffusion model and the pipeline; Lightning places it on each device (DDP: one rank per device)."""

    def __init__(self, model: DiffusionModel, pipeline: Pipeline):
        super().__init__()
        self.diffusion = model
        self.pipeline = pipeline

    def on_predict_start(self) -> None:
        self.diffusion.to(self.device)

    def predict_step(self, batch: list[PromptItem], batch_idx: int) -> list[ItemOutput]:
        return [self.pipeline.process(self.diffusion, item) for item in batch]
