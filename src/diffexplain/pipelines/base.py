"""The pipeline interface the runner drives, and what every pipeline returns per item."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from diffexplain.config.options import X0_STEPS
from diffexplain.errors import ResultError, check
from diffexplain.items import PromptItem
from diffexplain.models import DiffusionModel, Trajectory
from diffexplain.reporting.figures import image_row
from diffexplain.reporting.tables import COLUMNS
from diffexplain.schedules import Schedule


@dataclass
class ItemOutput:
    """Everything one item produced: result rows, heatmaps (float arrays) and images (uint8 HWC), keyed as in the
    output contract (``"{item_id}/..."``)."""

    item: object
    timesteps: list[int]
    rows: list[dict] = field(default_factory=list)
    heatmaps: dict[str, np.ndarray] = field(default_factory=dict)
    images: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0

    def check_finite(self) -> None:
        """Non-finite numbers are never results: raise :class:`ResultError` naming the first one."""
        item_id = self.item.item_id
        for r in self.rows:
            if not math.isfinite(r["value"]):
                where = f" at step {r['step_index']}" if r.get("step_index") is not None else ""
                raise ResultError(f"{item_id}: metric {r['metric']}{where} is {r['value']}")
        for key, value in self.heatmaps.items():
            if not np.isfinite(value).all():
                raise ResultError(f"heatmap {key} has non-finite values")


def to_uint8(images: torch.Tensor) -> list[np.ndarray]:
    """[N, 3, H, W] in [0, 1] → uint8 HWC arrays (the stored form of every image)."""
    hwc = images.detach().permute(0, 2, 3, 1).float().clamp(0, 1).cpu().numpy()
    return list((hwc * 255 + 0.5).astype(np.uint8))


def as_float(image: np.ndarray) -> np.ndarray:
    """A stored uint8 image as float32 in [0, 1] (for figures)."""
    return image.astype(np.float32) / 255 if image.dtype == np.uint8 else image


def check_trajectory(traj: Trajectory, model: DiffusionModel) -> None:
    """Stop on the first non-finite latent with one line naming the step and the likely cause."""
    finite = torch.isfinite(traj.latents.flatten(1)).all(1)
    if not finite.all():
        i = int((~finite).nonzero()[0]) - 1
        raise ResultError(
            f"{traj.prompt!r} seed {traj.seed}: the latent became non-finite at step {i} (t={int(traj.timesteps[i])}); "
            f"likely causes: model.guidance_scale={model.guidance_scale:g} too large, or model.dtype={model.dtype} "
            "overflowing (try float32)")


class Pipeline:
    """Base: ``run`` computes one item (pure, on the model's device); figures and tables are drawn from saved outputs.

    ``model_key`` names the config node the runner instantiates as this pipeline's model; ``columns`` the columns
    (and dtypes) of its result rows.
    """

    name = "pipeline"
    model_key = "model"
    columns = COLUMNS
    #: Called with units of work done as an item goes (set by the runner's bar, diffexplain.runner.progress).
    progress = staticmethod(lambda units: None)

    def __init__(self, schedule: Schedule | None = None, x0_steps: str = "explained"):
        check(x0_steps in X0_STEPS, "output.x0_steps", x0_steps, f"one of {list(X0_STEPS)}")
        self.schedule, self.x0_steps = schedule, x0_steps

    @classmethod
    def unused(cls, config: dict) -> set[str]:
        """Top-level config nodes this job's results do not depend on, given its resolved config (a plain dict; called
        before anything loads). The result fingerprint leaves them out, with their copies in the ``pipeline`` node."""
        return set()

    def setup(self, model) -> None:
        """Bind the job to its loaded model (build the explainer, resolve the steps) and check the configuration against
        it, before any work or file is written."""

    def describe(self) -> dict:
        """What this job resolved from its config, recorded in ``run.json``."""
        return {}

    def work_units(self) -> int:
        """About how many units of work one item takes, for the runner's progress bar (its total is items × units,
        corrected by what items really report); a pipeline that reports nothing moves the bar once per item."""
        return 1

    def report(self, units: float = 1) -> None:
        """Tell the runner's progress bar that ``units`` more of the current item's work is done."""
        self.progress(units)

    def process(self, model, item) -> ItemOutput:
        start = time.perf_counter()
        out = self.run(model, item)
        out.seconds = time.perf_counter() - start
        out.check_finite()
        return out

    def run(self, model, item) -> ItemOutput:
        raise NotImplementedError

    def item_figures(self, out: ItemOutput, fig_dir: Path) -> list[Path]:
        """Figures of one saved item; default: its x0-prediction grid, if it has images."""
        if f"{out.item.item_id}/final" not in out.images:
            return []
        return [x0_grid(out.item, out.images, out.timesteps, fig_dir)]

    def job_figures(self, results: pd.DataFrame, fig_dir: Path) -> list[Path]:
        """Figures of the whole job, from its result rows."""
        return []

    def tables(self, results: pd.DataFrame) -> dict[str, pd.DataFrame]:
        """Summary tables of the whole job (logged to W&B), from its result rows."""
        return {}

    # -- shared by every pipeline that generates --------------------------------------------------
    def stored_x0_steps(self, explained: list[int], num_steps: int) -> list[int]:
        """Steps whose decoded x0-prediction is kept (``output.x0_steps``)."""
        return {"explained": sorted(set(explained)), "all": list(range(num_steps)), "none": []}[self.x0_steps]

    def generate(self, model: DiffusionModel, item: PromptItem, explained: list[int] | None = None,
                 ) -> tuple[Trajectory, ItemOutput, dict[int, torch.Tensor]]:
        """Generate the item's trajectory once; keep its final image and the x0-predictions of ``output.x0_steps``
        (``explained``: default every step). Returns the decoded images too ({step: [3, H, W]}, final under -1)."""
        traj = model.generate(item.prompt, item.seed, self.schedule, item.negative_prompt)
        check_trajectory(traj, model)
        explained = list(range(traj.num_steps)) if explained is None else explained
        keep = self.stored_x0_steps(explained, traj.num_steps)
        decoded = model.decode(torch.cat([traj.x0[keep], traj.latents[-1:]]))
        out = ItemOutput(item, timesteps=traj.timesteps.tolist())
        images = dict(zip([*keep, -1], decoded))
        stored = to_uint8(decoded)
        out.images[f"{item.item_id}/final"] = stored[-1]
        for i, img in zip(keep, stored[:-1]):
            out.images[f"{item.item_id}/x0/{i}"] = img
        return traj, out, images


def x0_grid(item: PromptItem, images: dict, timesteps: list[int], fig_dir: Path) -> Path:
    """How the output is progressively generated: decoded x0-predictions over steps, then the final image."""
    pid = item.item_id
    steps = sorted(int(k.rsplit("/", 1)[1]) for k in images if k.startswith(f"{pid}/x0/"))
    imgs = [as_float(images[f"{pid}/x0/{i}"]) for i in steps] + [as_float(images[f"{pid}/final"])]
    titles = [f"i={i} t={timesteps[i]}" for i in steps] + ["final"]
    return image_row(imgs, titles, fig_dir / f"{pid}_x0.png",
                     suptitle=f"{item.prompt!r} seed {item.seed}: x0-prediction")
