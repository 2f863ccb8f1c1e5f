"""``pipeline=noised_classifier`` (paper B): when does a classifier recognise the true class of a noised image, and
which regions carry its decision then?

Per image: noise it with the DDPM forward process at ``noise.timesteps`` (``noise.repeats`` seeded noise draws, the
same draws at every t), classify every noised version in batches, and record the true class's softmax and top-1
accuracy per t (mean over the draws). The image's steep-rise step is the timestep of the largest rise of its smoothed
curve as t falls. Captum's Integrated Gradients, GradientSHAP and Occlusion then attribute the true-class logit on the
noised image (the first noise draw) at the image's own steep-rise step ± ``attribute.offsets`` and at the fixed
``attribute.timesteps``; on Shapes scenes the maps' mass is split into the object's outline band, its interior and
the background. Per-class curves (bootstrap CIs), steep-rise steps and the step where accuracy passes 50 % are
computed over all images at the end of the job (:meth:`tables`, :meth:`job_figures`).

Input space: the classifier's preprocessed image x in [0, 1] (its own resize/crop, no normalisation) is mapped to
DDPM's space 2x − 1 in [-1, 1], noised, mapped back by (x_t + 1)/2 — unclipped unless ``noise.clip`` — and the
classifier applies its own normalisation. Attributions are taken with respect to x_t in DDPM space.

Why per-image attribution steps: items are processed independently (and on several devices), so no item knows its
class's steep-rise step while it is processed. Each image is attributed around its *own* steep-rise step; rows carry
the position (``steep_rise-10``, ``steep_rise+0``, ``t=0``...) so positions are comparable across images, and the
per-class step is reported next to the per-image ones (median) for comparison.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from diffexplain.classifiers import ImageClassifier
from diffexplain.errors import UserError, check
from diffexplain.explainers.classifier_attribution import METHODS, ClassifierAttribution
from diffexplain.items import ImageItem
from diffexplain.metrics.curves import bootstrap_mean_ci, smooth, steep_rise, steep_rise_ci, sustained_above
from diffexplain.metrics.outline import outline_regions, region_mass
from diffexplain.models.forward_process import ForwardProcess
from diffexplain.pipelines.base import ItemOutput, Pipeline, as_float, to_uint8
from diffexplain.reporting import noised_figures

COLUMNS = {"class": "string", "image_id": "string", "t": "Int64", "metric": "string", "value": "float64",
           "method": "string", "position": "string"}
"""Rows: ``softmax_true`` and ``accuracy`` per (image, t) — means over the noise draws; ``steep_rise_t`` per image
(value = its steep-rise timestep); per attributed (image, position, method), with a mask: ``mass_object``,
``mass_outline``, ``mass_edge``, ``mass_interior``, ``mass_background`` (shares of the map's mass; regions in
:func:`~diffexplain.metrics.outline.outline_regions`), ``outline_vs_interior``, ``edge_vs_interior`` and
``object_vs_background`` (mass per pixel, one region over the other)."""


@dataclass
class NoiseOptions:
    """``pipeline.noise``: the forward process and the classification batches."""

    schedule: str = "linear"
    timesteps: int | list[int] = 100
    repeats: int = 4
    clip: bool = False
    batch_size: int = 256

    def __post_init__(self):
        check(isinstance(self.repeats, int) and self.repeats >= 1, "pipeline.noise.repeats", self.repeats,
              "an integer >= 1")
        check(isinstance(self.clip, bool), "pipeline.noise.clip", self.clip, "true or false")
        check(isinstance(self.batch_size, int) and self.batch_size >= 1, "pipeline.noise.batch_size",
              self.batch_size, "an integer >= 1")
        if not isinstance(self.timesteps, int):
            self.timesteps = list(self.timesteps)


@dataclass
class CurveOptions:
    """``pipeline.curve``: smoothing of the steep-rise detection and the bootstrap of the per-class CIs."""

    smooth: float = 2.0
    bootstrap: int = 1000
    confidence: float = 0.95
    accuracy_level: float = 0.5

    def __post_init__(self):
        check(isinstance(self.smooth, (int, float)) and 0 <= self.smooth, "pipeline.curve.smooth", self.smooth,
              "a number >= 0 (Gaussian sigma in steps of the timestep grid; 0 = no smoothing)")
        check(isinstance(self.bootstrap, int) and self.bootstrap >= 10, "pipeline.curve.bootstrap", self.bootstrap,
              "an integer >= 10 (bootstrap resamples)")
        check(isinstance(self.confidence, float) and 0 < self.confidence < 1, "pipeline.curve.confidence",
              self.confidence, "a number in (0, 1)")
        check(isinstance(self.accuracy_level, (int, float)) and 0 <= self.accuracy_level < 1,
              "pipeline.curve.accuracy_level", self.accuracy_level, "a number in [0, 1)")


@dataclass
class AttributeOptions:
    """``pipeline.attribute``: which methods, at which steps, and the outline band's half-width."""

    methods: list[str] = field(default_factory=lambda: list(METHODS))
    offsets: list[int] = field(default_factory=lambda: [-10, 0, 10])
    timesteps: list[int] = field(default_factory=lambda: [0, 900])
    band: int = 1
    ig_steps: int = 32
    shap_samples: int = 16
    shap_baselines: int = 8
    window: int | None = None
    stride: int | None = None
    internal_batch_size: int = 64
    baseline: float = 0.0

    def __post_init__(self):
        self.methods, self.offsets, self.timesteps = list(self.methods), list(self.offsets), list(self.timesteps)
        check(all(isinstance(o, int) for o in self.offsets), "pipeline.attribute.offsets", self.offsets,
              "a list of integers (timesteps relative to each image's steep-rise step)")
        check(all(isinstance(t, int) and t >= 0 for t in self.timesteps), "pipeline.attribute.timesteps",
              self.timesteps, "a list of timesteps >= 0")
        check(isinstance(self.band, int) and self.band >= 1, "pipeline.attribute.band", self.band,
              "an integer >= 1 (pixels of the classifier's input on each side of the object's edge)")

    def attribution(self) -> ClassifierAttribution:
        return ClassifierAttribution(self.methods, self.ig_steps, self.shap_samples, self.shap_baselines,
                                     self.window, self.stride, self.internal_batch_size, self.baseline)


def item_seed(seed: int, item_id: str) -> int:
    """A seed for one image's noise draws: stable for (seed, item id), independent of the other items."""
    return int.from_bytes(hashlib.sha256(f"{int(seed)}/{item_id}".encode()).digest()[:8], "little") % 2**63


def _row(item: ImageItem, metric: str, value: float, t: int | None = None, method: str | None = None,
         position: str | None = None) -> dict:
    return {"class": item.label, "image_id": item.image_id, "t": t, "metric": metric, "value": float(value),
            "method": method, "position": position}


class NoisedClassifierPipeline(Pipeline):
    name = "noised_classifier"
    model_key = "classifier"
    columns = COLUMNS

    def __init__(self, schedule=None, x0_steps: str = "explained", seed: int = 0, noise: dict | None = None,
                 curve: dict | None = None, attribute: dict | None = None, class_figures: int = 12):
        super().__init__(None, x0_steps)
        check(isinstance(seed, int) and 0 <= seed < 2**63, "seed", seed, "an integer in [0, 2^63)")
        check(isinstance(class_figures, int) and class_figures >= 0, "pipeline.class_figures", class_figures,
              "an integer >= 0")
        self.seed, self.class_figures = seed, class_figures
        self.noise = NoiseOptions(**(noise or {}))
        self.curve = CurveOptions(**(curve or {}))
        self.attribute = AttributeOptions(**(attribute or {}))
        self.process_ = ForwardProcess(self.noise.schedule)
        self.timesteps = self.process_.timesteps(self.noise.timesteps)
        last = self.process_.num_train_timesteps - 1
        check(all(t <= last for t in self.attribute.timesteps), "pipeline.attribute.timesteps",
              self.attribute.timesteps, f"timesteps in [0, {last}] (the schedule's training steps)")
        self.attributor = self.attribute.attribution()
        self.classifier_info: dict = {}

    # -- the job ----------------------------------------------------------------------------------
    def setup(self, model) -> None:
        if not isinstance(model, ImageClassifier):
            raise UserError("classifier._target_", type(model).__name__,
                            "an image classifier of diffexplain.classifiers (classifier=shapes | hf)")
        self.classifier_info = model.describe()

    def describe(self) -> dict:
        return {"timesteps": self.timesteps, "noise": {**asdict(self.noise), **self.process_.describe()},
                "curve": asdict(self.curve), "attribute": {**asdict(self.attribute), **self.attributor.describe()},
                "classifier": self.classifier_info,
                "input_space": "classifier input x in [0, 1] -> 2x-1 -> DDPM add_noise -> (x_t+1)/2"
                               + (" clipped to [0, 1]" if self.noise.clip else " (unclipped)")
                               + " -> the classifier's normalisation; attributions w.r.t. x_t in [-1, 1] space"}

    def to_input(self, z: torch.Tensor) -> torch.Tensor:
        """DDPM space [-1, 1] → the classifier's un-normalised input space [0, 1]."""
        x = (z + 1) / 2
        return x.clamp(0, 1) if self.noise.clip else x

    def noised(self, x0: torch.Tensor, eps: torch.Tensor, timesteps: list[int]) -> torch.Tensor:
        """x_t for each timestep × noise draw, [len(timesteps) · len(eps), C, H, W] in DDPM space (t-major)."""
        t = torch.tensor(timesteps, device=x0.device).repeat_interleave(len(eps))
        return self.process_.noise(x0.expand(len(t), -1, -1, -1), eps.repeat(len(timesteps), 1, 1, 1), t)

    @torch.no_grad()
    def classify(self, model: ImageClassifier, x0: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Softmax [T, R, num_labels] of every noised version (timestep × noise draw), in batches."""
        probs = []
        per_batch = max(1, self.noise.batch_size // len(eps))
        for start in range(0, len(self.timesteps), per_batch):
            z = self.noised(x0, eps, self.timesteps[start:start + per_batch])
            probs.append(model(self.to_input(z)).float().softmax(-1).cpu())
        return torch.cat(probs).view(len(self.timesteps), len(eps), -1)

    def attribution_steps(self, steep: int) -> dict[str, int]:
        """{position: timestep}: the image's steep-rise step + offsets (clipped to the schedule), then fixed steps."""
        last = self.process_.num_train_timesteps - 1
        steps = {f"steep_rise{o:+d}": int(min(max(steep + o, 0), last)) for o in self.attribute.offsets}
        steps.update({f"t={t}": int(t) for t in self.attribute.timesteps})
        return steps

    def run(self, model: ImageClassifier, item: ImageItem) -> ItemOutput:
        image, mask = item.load()
        device, iid = model.device, item.image_id
        x = model.preprocess([image]).to(device)
        true = model.class_index(item.label)
        g = torch.Generator().manual_seed(item_seed(self.seed, iid))
        eps = torch.randn((self.noise.repeats, *x.shape[1:]), generator=g).to(device, x.dtype)
        x0 = 2 * x - 1
        probs = self.classify(model, x0, eps)
        p_true, correct = probs[..., true], (probs.argmax(-1) == true).float()
        out = ItemOutput(item, timesteps=list(self.timesteps))
        for k, t in enumerate(self.timesteps):
            out.rows.append(_row(item, "softmax_true", p_true[k].mean(), t))
            out.rows.append(_row(item, "accuracy", correct[k].mean(), t))
        steep = int(steep_rise(self.timesteps, p_true.mean(1).numpy(), self.curve.smooth))
        out.rows.append(_row(item, "steep_rise_t", steep, steep))
        out.images[f"{iid}/clean"] = to_uint8(x)[0]
        if not self.attribute.methods:
            return out
        positions = self.attribution_steps(steep)
        steps = sorted(set(positions.values()), reverse=True)
        z = self.noised(x0, eps[:1], steps)
        for t, img in zip(steps, to_uint8(self.to_input(z).clamp(0, 1))):
            out.images[f"{iid}/noised/{t}"] = img
        maps = self.attributor(lambda v: model(self.to_input(v)), z, true, g)
        regions = outline_regions(model.preprocess_mask(mask), self.attribute.band) if mask is not None else None
        for method, m in maps.items():
            for k, t in enumerate(steps):
                out.heatmaps[f"{iid}/{method}/{t}"] = m[k].numpy().astype(np.float32)
            if regions is None:
                continue
            for position, t in positions.items():
                for metric, value in region_mass(m[steps.index(t)].numpy(), regions).items():
                    out.rows.append(_row(item, metric, value, t, method, position))
        return out

    # -- job-level summaries ------------------------------------------------------------------------
    def curves(self, results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Per class and t: mean true-class softmax with its bootstrap CI, smoothed mean and accuracy (``curves``);
        per class: steep-rise step of the mean curve (+ bootstrap CI), the per-image median, and the step from which
        accuracy stays above ``curve.accuracy_level`` (``classes``)."""
        c = self.curve
        wide = {m: results[results.metric == m].pivot_table(index=["class", "image_id"], columns="t", values="value")
                for m in ("softmax_true", "accuracy")}
        per_image = results[results.metric == "steep_rise_t"].groupby("class")["value"]
        curve_rows, class_rows = [], []
        for name in dict.fromkeys(results["class"].dropna()):
            soft, acc = wide["softmax_true"].loc[name], wide["accuracy"].loc[name]
            t, values = soft.columns.to_numpy(int), soft.to_numpy(np.float64)
            mean, acc_mean = values.mean(0), acc.to_numpy(np.float64).mean(0)
            lo, hi = bootstrap_mean_ci(values, c.confidence, c.bootstrap, self.seed)
            smoothed = smooth(mean, c.smooth)
            curve_rows += [{"class": name, "t": int(t[k]), "softmax_true": mean[k], "ci_low": lo[k], "ci_high": hi[k],
                            "smoothed": smoothed[k], "accuracy": acc_mean[k]} for k in range(len(t))]
            ci = steep_rise_ci(t, values, c.smooth, c.confidence, c.bootstrap, self.seed)
            class_rows.append({
                "class": name, "n_images": len(values), "steep_rise_t": int(steep_rise(t, mean, c.smooth)),
                "steep_rise_ci_low": ci[0], "steep_rise_ci_high": ci[1],
                "steep_rise_t_image_median": float(per_image.get_group(name).median()),
                "accuracy_above_t": sustained_above(t, acc_mean, c.accuracy_level),
                "softmax_true_t_min": mean[0], "softmax_true_t_max": mean[-1],
                "accuracy_t_min": acc_mean[0], "accuracy_t_max": acc_mean[-1]})
        return pd.DataFrame(curve_rows), pd.DataFrame(class_rows)

    @staticmethod
    def outline(results: pd.DataFrame) -> pd.DataFrame:
        """Per method and attributed position (noisiest first): mean t, and the means over images of the region
        shares and ratios (+ the medians of the outline and inner-edge ratios)."""
        rows = results[results.metric.str.startswith("mass_") | results.metric.str.contains("_vs_")]
        if rows.empty:
            return pd.DataFrame()
        wide = rows.pivot_table(index=["method", "position", "image_id"], columns="metric", values="value")
        t = rows.groupby(["method", "position"])["t"].mean().rename("t")
        table = wide.groupby(["method", "position"]).mean().join(t)
        for ratio in ("outline_vs_interior", "edge_vs_interior"):
            if ratio in wide:
                table[f"{ratio}_median"] = wide.groupby(["method", "position"])[ratio].median()
        table["n_images"] = wide.groupby(["method", "position"]).size()
        table = table.reset_index().sort_values(["method", "t"], ascending=[True, False], kind="stable")
        order = {m: k for k, m in enumerate(dict.fromkeys(rows.method))}
        return table.sort_values("method", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)

    def tables(self, results: pd.DataFrame) -> dict[str, pd.DataFrame]:
        curves, classes = self.curves(results)
        tables = {"classes": classes, "curves": curves}
        outline = self.outline(results)
        if not outline.empty:
            tables["outline"] = outline
        return tables

    def item_figures(self, out: ItemOutput, fig_dir: Path) -> list[Path]:
        """None per item: the per-class grids are drawn from the whole job (:meth:`job_figures`)."""
        return []

    def job_figures(self, results: pd.DataFrame, fig_dir: Path) -> list[Path]:
        """Softmax curves per class with the steep-rise step, accuracy over t, the outline/interior plot, and per
        class (the first ``class_figures``) the noised images of its first image over the attributed steps with each
        method's map overlaid (read from the job's heatmaps.npz and images/, written before this is called)."""
        from diffexplain.io import ImageFiles

        curves, classes = self.curves(results)
        paths = [noised_figures.softmax_curves(curves, classes, fig_dir / "softmax_curves.png"),
                 noised_figures.accuracy_curves(curves, fig_dir / "accuracy.png")]
        outline = self.outline(results)
        if not outline.empty:
            paths.append(noised_figures.outline_plot(outline, fig_dir / "outline_vs_interior.png"))
        out_dir = fig_dir.parent
        if not self.attribute.methods or not (out_dir / "heatmaps.npz").is_file():
            return paths
        images = ImageFiles(out_dir / "images")
        steep = results[results.metric == "steep_rise_t"].set_index("image_id")["value"]
        firsts = results.drop_duplicates("class")[["class", "image_id"]].head(self.class_figures)
        with np.load(out_dir / "heatmaps.npz") as npz:
            for name, iid in firsts.itertuples(index=False):
                positions = self.attribution_steps(int(steep[iid]))
                steps = sorted(set(positions.values()), reverse=True)
                labels = {t: " / ".join(p for p, s in positions.items() if s == t) for t in steps}
                keys = [f"{iid}/{m}/{t}" for m in self.attribute.methods for t in steps]
                if not all(k in npz.files for k in keys):
                    continue
                noised = [as_float(images[f"{iid}/noised/{t}"]) for t in steps]
                maps = {m: [npz[f"{iid}/{m}/{t}"] for t in steps] for m in self.attribute.methods}
                titles = [f"t={t}\n{labels[t]}" if not labels[t].startswith("t=") else f"t={t}" for t in steps]
                slug = iid.replace("/", "_")
                paths.append(noised_figures.attribution_grid(
                    noised, maps, titles, fig_dir / f"class_{slug}.png",
                    suptitle=f"{name}: {iid}, steep rise at t={int(steep[iid])} (noisier → cleaner)"))
        return paths
