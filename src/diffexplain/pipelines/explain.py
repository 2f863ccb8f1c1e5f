"""``pipeline=explain`` (RQ2/RQ3): explain chosen steps of each prompt's trajectory.

Per item: generate once, explain the steps, keep the maps (``heatmaps.npz``), and where the prompt belongs to the
Shapes grammar score each map against the objects segmented from the final image (rows ``saliency_inside``,
``saliency_outside``, ``pointing_game``, ``iou_topk``, ``mass_inside`` and the chance levels ``area_share``,
``iou_chance``; per-token maps against their own word's object).

Sampled maps (DF-RISE, GradientSHAP) also get their Monte-Carlo reliability per step — ``mc_reliability``, the
split-half Spearman–Brown reliability (:mod:`diffexplain.metrics.reliability`) — and the number of draws used
(``n_masks_used`` / ``n_samples_used``), read from the explainer's ``last_stats``. A deterministic map (DF-CAM,
attention, Integrated Gradients, occlusion) has reliability 1 by construction and gets no such row.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch
from hydra.utils import get_class

from diffexplain.errors import UserError
from diffexplain.items import PromptItem
from diffexplain.metrics.localisation import (
    area_share,
    chance_iou,
    inside_outside,
    mask_to_grid,
    mass_inside,
    pointing_game,
    top_k_iou,
)
from diffexplain.metrics.token_roles import attention_shares, role_shares
from diffexplain.models import DiffusionModel
from diffexplain.models.diffusion import resolve_steps
from diffexplain.pipelines.base import ItemOutput, Pipeline, as_float
from diffexplain.reporting.figures import image_row
from diffexplain.reporting.tables import row


def ground_truth(prompt: str, final_image: np.ndarray) -> dict[str, np.ndarray] | None:
    """Per-word object masks of a generated Shapes image, or None for prompts outside the grammar."""
    from diffexplain.world import segment

    try:
        return segment(final_image, prompt)
    except UserError:
        return None


def truth_mask(truth: dict | None, word: str | None, shape: tuple[int, int]) -> torch.Tensor | None:
    """The word's object (a per-token map) or the union of all prompted objects on the map's grid; None if unknown
    or empty."""
    if not truth or (word is not None and word.split("#")[0] not in truth):
        return None
    masks = [truth[word.split("#")[0]]] if word else list(truth.values())
    mask = mask_to_grid(np.logical_or.reduce(masks), shape)
    return mask if mask.any() and not mask.all() else None


class _Reporting:
    """An explainer factory whose explainers report their progress to the pipeline (:meth:`Pipeline.report`)."""

    def __init__(self, make, pipeline: Pipeline):
        self.make, self.pipeline = make, pipeline

    def __call__(self, *args, **kwargs):
        explainer = self.make(*args, **kwargs)
        explainer.progress = self.pipeline.report
        return explainer


class ExplainPipeline(Pipeline):
    name = "explain"

    def __init__(self, schedule, explainer, similarity=None, x0_steps: str = "explained"):
        super().__init__(schedule, x0_steps)
        self.make_explainer, self.similarity = explainer, similarity
        self.explainer, self.steps, self.num_steps = None, None, None

    @classmethod
    def unused(cls, config: dict) -> set[str]:
        """``evaluate`` (only ``pipeline=evaluate`` plays the games), and ``similarity`` where the explainer cannot use
        it (:meth:`Explainer.uses_similarity`)."""
        node = (config.get("pipeline") or {}).get("explainer") or config.get("explainer") or {}
        try:
            uses = get_class(node["_target_"]).uses_similarity(node)
        except (KeyError, ImportError, AttributeError, ValueError):  # no explainer class: assume it does
            uses = True
        return {"evaluate"} if uses else {"evaluate", "similarity"}

    def setup(self, model: DiffusionModel) -> None:
        if not isinstance(self.make_explainer, _Reporting):  # every explainer the job builds drives the bar
            self.make_explainer = _Reporting(self.make_explainer, self)
        self.explainer = self.make_explainer(model=model, similarity=self.similarity)
        if not self.explainer.uses_similarity(vars(self.explainer)):
            self.similarity = None  # no part of the results: the rows name none
        self.num_steps = len(model.apply_schedule(self.schedule, copy.deepcopy(model.scheduler)))
        self.steps = resolve_steps(self.explainer.steps, self.num_steps)

    def describe(self) -> dict:
        model = self.explainer.model
        return {"explainer": {"name": self.explainer.name, **self.explainer.describe()}, "steps": self.steps,
                "architecture": {"family": model.family.family, "denoiser": type(model.denoiser).__name__}}

    def run(self, model: DiffusionModel, item: PromptItem) -> ItemOutput:
        return self.explain_item(model, item)[1]

    def work_units(self) -> int:
        """Progress units per item: the trajectory (1) and one per explained step (DF-RISE: in mask batches)."""
        return 1 + len(self.steps)

    def explain_item(self, model: DiffusionModel, item: PromptItem):
        """Generate, explain and score one item: ``(trajectory, output, maps [S, K, h, w], truth masks or None)``
        (K = 1 for explainers without words)."""
        traj, out, _ = self.generate(model, item, self.steps)
        self.report(1)
        ex, pid, steps = self.explainer, item.prompt_id, self.steps
        maps = ex.explain(traj, steps).float()
        stats = {i: dict(v) for i, v in (getattr(ex, "last_stats", None) or {}).items()}  # sampled maps only
        words = ex.words(traj) if ex.per_token else [None]
        if not ex.per_token:
            maps = maps[:, None]
        truth = ground_truth(item.prompt, out.images[f"{pid}/final"])
        roles = ex.roles(item.prompt) if ex.per_token else None
        sim = self.similarity.name if self.similarity is not None else None
        for k, i in enumerate(steps):
            t = out.timesteps[i]
            for w, word in enumerate(words):
                key = f"{pid}/{ex.name}/{i}" + (f"/{word}" if word else "")
                out.heatmaps[key] = maps[k, w].numpy().astype(np.float32)
                for metric, value in self.localisation(maps[k, w], truth, word):
                    out.rows.append(row(item, metric, value, i, t, ex.name, sim, word))
            out.rows += [row(item, metric, value, i, t, ex.name, sim) for metric, value in stats.get(i, {}).items()
                         if math.isfinite(value)]
            if ex.per_token:
                shares = attention_shares(maps[k], words)
                out.rows += [row(item, "attention_share", v, i, t, ex.name, sim, w) for w, v in shares.items()]
                if roles:
                    out.rows += [row(item, "role_share", v, i, t, ex.name, sim, r)
                                 for r, v in role_shares(shares, roles).items()]
        return traj, out, maps, truth

    @staticmethod
    def localisation(saliency: torch.Tensor, truth: dict | None, word: str | None) -> list[tuple[str, float]]:
        """Scores against the word's object (per-token maps) or the union of all prompted objects: mean saliency
        inside/outside, pointing game, top-k IoU (k = the object's area) and the positive mass inside, with their
        chance levels (``area_share`` for mass and pointing, ``iou_chance``). Undefined scores are left out."""
        mask = truth_mask(truth, word, tuple(saliency.shape))
        if mask is None:
            return []
        inside, outside = inside_outside(saliency, mask)
        scores = [("saliency_inside", inside), ("saliency_outside", outside),
                  ("pointing_game", pointing_game(saliency, mask)), ("iou_topk", top_k_iou(saliency, mask)),
                  ("mass_inside", mass_inside(saliency, mask)), ("area_share", area_share(mask)),
                  ("iou_chance", chance_iou(mask))]
        return [(metric, value) for metric, value in scores if math.isfinite(value)]

    def item_figures(self, out: ItemOutput, fig_dir: Path) -> list[Path]:
        """The item's maps over steps overlaid on the decoded x0-prediction (where kept) and on the final image
        (per-token explainers: one row per word), and its x0-prediction grid."""
        pid, name = out.item.item_id, self.explainer.name
        maps: dict[str, dict[int, np.ndarray]] = {}
        for key, value in out.heatmaps.items():
            parts = key.split("/")
            if parts[0] == pid and parts[1] == name:
                maps.setdefault("/".join(parts[3:]), {})[int(parts[2])] = value
        if not maps:
            return super().item_figures(out, fig_dir)
        steps = sorted(next(iter(maps.values())))
        titles = [f"i={i} t={out.timesteps[i]}" for i in steps]
        final = as_float(out.images[f"{pid}/final"])
        x0 = [as_float(out.images[f"{pid}/x0/{i}"]) if f"{pid}/x0/{i}" in out.images else final for i in steps]
        if self.explainer.per_token:
            words = list(maps)
            imgs, overlays = x0 * len(words), [maps[w][i] for w in words for i in steps]
            titles = [f"{w} {t}" for w in words for t in titles]
            what = "per word (one row each) on the x0-prediction"
        else:
            imgs, overlays = x0 + [final] * len(steps), [maps[""][i] for i in steps] * 2
            titles = titles * 2
            what = "on the x0-prediction (top) and the final image (bottom)"
        path = image_row(imgs, titles, fig_dir / f"{pid}_{name}.png", overlays=overlays, max_cols=len(steps),
                         suptitle=f"{out.item.prompt!r} seed {out.item.seed}: {name} {what}")
        return [path, *super().item_figures(out, fig_dir)]
