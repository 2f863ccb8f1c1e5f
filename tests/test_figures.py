"""What a person sees: figures without empty panels or cut-off titles, identical curves marked, heatmaps with a colour
bar, and a progress bar that counts work with a readable time left."""

from __future__ import annotations

from types import SimpleNamespace

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from diffexplain.explainers.base import Explainer
from diffexplain.pipelines.base import ItemOutput, Pipeline
from diffexplain.reporting import figures, plots
from diffexplain.runner.data import ItemDataModule
from diffexplain.runner.module import ExplainModule
from diffexplain.runner.progress import WorkProgressBar, progress_bar, readable_duration


def curve_rows(explainers: dict[str, int], steps=(17, 18), phase="late") -> pd.DataFrame:
    """Deletion/insertion curve rows; explainers with the same seed get identical curves."""
    rows = []
    for name, seed in explainers.items():
        rng = np.random.default_rng(seed)
        for pid in ("p0", "p1"):
            for step in steps:
                for game in ("deletion", "insertion"):
                    ys = np.linspace(1, 0, 5) if game == "deletion" else np.linspace(0, 1, 5)
                    ys = ys + rng.normal(0, 0.05, 5)
                    rows += [{"explainer": name, "prompt_id": pid, "seed": 0, "step_index": step,
                              "metric": f"{game}_curve", "x": x, "value": y, "phase": phase}
                             for x, y in zip(np.linspace(0, 1, 5), ys)]
    df = pd.DataFrame(rows)
    df["phase"] = pd.Categorical(df.phase, ["early", "middle", "late"], ordered=True)
    return df


@pytest.fixture
def drawn(monkeypatch):
    """The figures plots.save is given (kept open for inspection)."""
    kept = []
    monkeypatch.setattr(plots, "save", lambda fig, path: kept.append(fig) or path)
    yield kept
    import matplotlib.pyplot as plt

    for fig in kept:
        plt.close(fig)


def test_game_curves_have_no_empty_panels_when_only_late_steps_exist(drawn, tmp_path):
    plots.game_curves(curve_rows({"rise": 0, "random": 1}), tmp_path / "c.png", errorbar=None)
    (fig,) = drawn
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 2  # one row (late) × deletion, insertion
    assert all(ax.lines for ax in panels)
    assert {ax.get_title() for ax in panels} == {"late steps | deletion", "late steps | insertion"}
    assert all(ax.get_ylabel() == "" for ax in panels)  # one shared y label instead
    assert "similarity" in fig.get_supylabel()


def test_identical_curves_are_drawn_once_and_named_together(drawn, tmp_path):
    df = curve_rows({"cam sim=ssim": 0, "cam sim=cosine": 0, "rise": 2, "random": 1})
    plots.game_curves(df, tmp_path / "c.png", errorbar=None)
    (fig,) = drawn
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["cam sim=ssim ≡ cam sim=cosine", "rise", "random"]  # the baseline last
    assert "identical" in fig.legends[0].get_title().get_text()
    groups = plots.identical_groups(df, "explainer", ["prompt_id", "step_index", "metric", "x"])
    assert groups == {"cam sim=ssim": ["cam sim=ssim", "cam sim=cosine"], "rise": ["rise"], "random": ["random"]}


def test_image_row_wraps_its_title_and_has_one_colour_bar(monkeypatch, tmp_path):
    import matplotlib.pyplot as plt

    kept = []
    monkeypatch.setattr(plt, "close", kept.append)
    images, maps = [np.full((8, 8, 3), 0.5)] * 2, [np.random.default_rng(0).random((4, 4))] * 2
    title = "'a red circle and a blue square and a green triangle' seed 0: rise on the x0-prediction (top)"
    figures.image_row(images, ["i=1 t=500", "i=2 t=250"], tmp_path / "row.png", suptitle=title, overlays=maps)
    (fig,) = kept
    fig.canvas.draw()
    box = fig.get_suptitle() and fig._suptitle.get_window_extent(fig.canvas.get_renderer())
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width  # not cut off at either end
    assert len(fig.axes) == 3  # two panels and the colour bar
    plt.close(fig)


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (45.4, "45s"), (200, "3m 20s"), (3720, "1h 02m"),
                                           (2 * 86400 + 3 * 3600, "2d 03h"), (None, "?"), (float("inf"), "?")])
def test_readable_duration(seconds, text):
    assert readable_duration(seconds) == text


class Steps(Explainer):
    """Reports half of each step itself; the base class reports the rest."""

    def explain_step(self, trajectory, i):
        self.report(0.5)
        return torch.zeros(2, 2)


class Trajectory:
    def check_steps(self, steps):
        return list(steps)


def test_explainers_report_one_unit_per_step():
    seen = []
    ex = Steps(model=None)
    ex.progress = seen.append
    ex.explain(Trajectory(), [0, 1, 2])
    assert seen == [0.5, 0.5] * 3 and sum(seen) == 3
    Steps(model=None).explain(Trajectory(), [0])  # the default progress does nothing


class Counting(Pipeline):
    """Reports ``units`` units per item, one at a time, and records what the bar showed."""

    name = "counting"

    def __init__(self, units: int, estimate: int):
        super().__init__()
        self.units, self.estimate, self.seen = units, estimate, []

    def work_units(self) -> int:
        return self.estimate

    def run(self, model, item) -> ItemOutput:
        for _ in range(self.units):
            self.report(1)
            self.seen.append((self.bar.done, self.bar.total))
        return ItemOutput(item, timesteps=[])


@pytest.mark.filterwarnings("ignore:.*LeafSpec")
@pytest.mark.parametrize("units, estimate", [(3, 3), (4, 2)])
def test_progress_bar_counts_work_units(units, estimate):
    pipeline = Counting(units, estimate)
    bar = pipeline.bar = WorkProgressBar(min_interval_s=0)
    trainer = L.Trainer(accelerator="cpu", devices=1, callbacks=[bar], logger=False, enable_checkpointing=False,
                        enable_model_summary=False)
    items = [SimpleNamespace(item_id=name) for name in "abc"]
    trainer.predict(ExplainModule(torch.nn.Linear(1, 1), pipeline), datamodule=ItemDataModule(items),
                    return_predictions=False)
    assert pipeline.seen[0] == (1, 3 * estimate)  # the pipeline's estimate at first
    assert pipeline.seen[units] == (units + 1, 3 * units)  # corrected by the first item
    assert [d for d, _ in pipeline.seen] == list(range(1, 3 * units + 1))  # moves within items
    assert bar.done == bar.total == 3 * units and bar.items_done == 3
    assert "progress" not in vars(pipeline)  # unhooked at the end


def test_disabled_progress_bar_is_a_plain_callback():
    assert isinstance(progress_bar(True), WorkProgressBar)
    assert not isinstance(progress_bar(False), WorkProgressBar) and isinstance(progress_bar(False), Callback)
