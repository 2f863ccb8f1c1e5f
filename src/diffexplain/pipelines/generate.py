"""``pipeline=generate`` (RQ1): how is the output progressively generated?"""

from __future__ import annotations

from diffexplain.items import PromptItem
from diffexplain.models import DiffusionModel
from diffexplain.pipelines.base import ItemOutput, Pipeline
from diffexplain.reporting.tables import row
from diffexplain.similarity import SSIM, Cosine


class GeneratePipeline(Pipeline):
    """Generate each item; rows ``ssim_to_final`` and ``cosine_to_final`` of every step's decoded x0-prediction.

    Every step is "explained" here: ``output.x0_steps=explained`` keeps all x0-predictions (``none`` keeps none)."""

    name = "generate"
    unused = classmethod(lambda cls, config: {"explainer", "similarity", "evaluate"})  # see Pipeline

    def run(self, model: DiffusionModel, item: PromptItem) -> ItemOutput:
        traj, out, _ = self.generate(model, item)
        x0 = model.decode(traj.x0)
        final = model.decode(traj.latents[-1:])
        scores = {"ssim_to_final": SSIM(data_range=1.0)(x0, final.expand_as(x0)),
                  "cosine_to_final": Cosine()(x0, final.expand_as(x0))}
        for metric, values in scores.items():
            for i, v in enumerate(values.tolist()):
                out.rows.append(row(item, metric, v, step_index=i, timestep=out.timesteps[i]))
        return out
