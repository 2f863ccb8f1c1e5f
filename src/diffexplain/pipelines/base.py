"""The pipeline interface the runner drives, and what every pipeline returns per item."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from diffexplain.models import DiffusionModel, Trajectory
from diffexplain.reporting.figures import image_row
from diffexplain.runner.data import PromptItem
from diffexplain.schedules import Schedule


@dataclass
class ItemOutput:
    """Everything one item produced: result rows, heatmaps and images keyed as in the output contract."""

    item: PromptItem
    timesteps: list[int]
    rows: list[dict] = field(default_factory=list)
    heatmaps: dict[str, np.ndarray] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0


def to_hwc(images: torch.Tensor) -> list[np.ndarray]:
    """[N, 3, H, W] in [0, 1] → float32 HWC arrays."""
    return [x for x in images.permute(0, 2, 3, 1).float().cpu().numpy().astype(np.float32)]


class Pipeline:
    """Base: ``process`` computes one item (pure, on the model's device); ``figures`` draws from merged outputs."""

    name = "pipeline"

    def __init__(self, schedule: Schedule):
        self.schedule = schedule

    def validate(self, model: DiffusionModel) -> None:
        """Check the configuration against the model before any work or file is written."""

    def process(self, model: DiffusionModel, item: PromptItem) -> ItemOutput:
        start = time.perf_counter()
        out = self.run(model, item)
        out.seconds = time.perf_counter() - start
        return out

    def run(self, model: DiffusionModel, item: PromptItem) -> ItemOutput:
        raise NotImplementedError

    def figures(self, outputs: list[ItemOutput], heatmaps: dict, images: dict, fig_dir: Path) -> list[Path]:
        """Figures for the whole job; default: the x0-prediction grid of every item that has images."""
        return [x0_grid(o.item, images, o.timesteps, fig_dir) for o in outputs if f"{o.item.prompt_id}/final" in images]

    # -- shared by every pipeline that generates --------------------------------------------------
    def generate(self, model: DiffusionModel, item: PromptItem) -> tuple[Trajectory, ItemOutput]:
        """Generate the item's trajectory once and record its decoded x0-predictions and final image."""
        traj = model.generate(item.prompt, item.seed, self.schedule, item.negative_prompt)
        decoded = to_hwc(model.decode(torch.cat([traj.x0, traj.latents[-1:]])))
        out = ItemOutput(item, timesteps=traj.timesteps.tolist())
        out.images[f"{item.prompt_id}/final"] = decoded[-1]
        for i, img in enumerate(decoded[:-1]):
            out.images[f"{item.prompt_id}/x0/{i}"] = img
        return traj, out


def x0_grid(item: PromptItem, images: dict, timesteps: list[int], fig_dir: Path) -> Path:
    """How the output is progressively generated: decoded x0-predictions over steps, then the final image."""
    pid = item.prompt_id
    steps = sorted(int(k.rsplit("/", 1)[1]) for k in images if k.startswith(f"{pid}/x0/"))
    imgs = [images[f"{pid}/x0/{i}"] for i in steps] + [images[f"{pid}/final"]]
    titles = [f"i={i} t={timesteps[i]}" for i in steps] + ["final"]
    return image_row(imgs, titles, fig_dir / f"{pid}_x0.png", suptitle=f"{item.prompt!r} seed {item.seed}: x0-prediction")
