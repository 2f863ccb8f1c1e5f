"""``pipeline=evaluate`` (the default job): explain the chosen steps, then measure how far each map can be trusted.

Per item, on top of ``pipeline=explain``'s maps and localisation rows, for the explainer's map (per-token explainers:
summed over words — ConceptAttention: the prompt's words' share) and for the baselines' maps (``random``, computed
once per item and, inside a sweep, cached for every job that shares the item):

- deletion and insertion games on z_t at each explained step (:mod:`diffexplain.metrics.games`), scored with
  ``evaluate.similarity`` on ``evaluate.target``: rows ``deletion_curve``/``insertion_curve`` (x in column ``x``)
  and ``deletion_auc`` (lower is better) / ``insertion_auc`` (higher is better);
- localisation of the baselines' maps against the Shapes objects (the explainer's are ``explain``'s rows);
- step correlations: ``step_spearman``/``step_pearson`` between every pair of explained steps (second step in
  ``other_step``) and ``truth_spearman`` of each map with the prompted objects;
- with ``evaluate.sanity=true``, the model-parameter randomisation test (Adebayo et al., 2018): the explainer re-run
  on UNets re-initialised cumulatively from the output side, rows ``sanity_rho`` (cascade stage in ``stage``; the
  similarity is ``evaluate.sanity_similarity``), and its noise floor ``sanity_floor``: the same similarity between
  two independent draws of the trained model's map (the explainer re-run with seed + 1; 1 for deterministic maps).

Controls (``evaluate.controls``, :mod:`diffexplain.metrics.controls`) play the same games on the same items, under
their own ``explainer`` names: ``magnitude`` and ``edges`` — maps of z_t alone, cached per item like ``random`` —
and ``randomised``: this explainer's map on the fully re-initialised UNet, played in the trained model's games
(cached per item and explainer configuration; with the sanity check on, it is the cascade's last stage).
``evaluate.substrate=renoise`` deletes into fresh noise at the step's noise level
(:meth:`~diffexplain.models.DiffusionModel.noise_latent`, seeded per item and step).

Job-level tables (AUC with bootstrap CIs and the paired comparison with ``random`` and each control, the verdict,
localisation, Monte-Carlo reliability, sanity with CIs, noise floor and verdict) and figures are drawn from the rows
(:mod:`diffexplain.reporting.evaluation`).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from diffexplain import io
from diffexplain.config.options import (
    CONTROLS,
    INPUT_CONTROLS,
    PROTOCOLS,
    SANITY_SIMILARITIES,
    SANITY_STAGES,
    SUBSTRATES,
    shapes_world,
)
from diffexplain.config.options import EVALUATE_BASELINES as BASELINES
from diffexplain.errors import check
from diffexplain.explainers import RandomExplainer
from diffexplain.items import PromptItem
from diffexplain.metrics.controls import input_maps
from diffexplain.metrics.correlation import mask_correlation, step_matrix
from diffexplain.metrics.games import GAMES, play_games
from diffexplain.metrics.sanity import cascading_randomisation, map_similarity, randomisation_stages
from diffexplain.models import DiffusionModel
from diffexplain.models.batching import BatchSize
from diffexplain.models.outcomes import TARGETS, Outcome
from diffexplain.pipelines.base import ItemOutput
from diffexplain.pipelines.explain import ExplainPipeline, truth_mask
from diffexplain.reporting import evaluation
from diffexplain.reporting.tables import row, to_frame
from diffexplain.similarity import SIMILARITIES, Similarity


class EvaluateOptions:
    """``evaluate.*`` (see conf/config.yaml)."""

    def __init__(self, target: str = "output", similarity: str | None = None, n_points: int = 17,
                 substrate: str = "zeros", batch_size: int | str = 64, baselines=("random",),
                 protocol: str = "per_prompt",
                 sanity: bool = False, sanity_stages: str = "cascade", bootstrap: int = 10_000,
                 controls=CONTROLS, sanity_similarity: str = "spearman"):
        check(target in TARGETS, "evaluate.target", target, f"one of {list(TARGETS)}")
        check(similarity is None or similarity in SIMILARITIES, "evaluate.similarity", similarity,
              f"one of {list(SIMILARITIES)} or null (ssim; fid under evaluate.protocol=paper)")
        check(protocol in PROTOCOLS, "evaluate.protocol", protocol, f"one of {list(PROTOCOLS)}")
        check(protocol != "paper" or similarity in (None, "fid"), "evaluate.similarity", similarity,
              "'fid' or null under evaluate.protocol=paper (the paper scores single-image FID)")
        check(isinstance(n_points, int) and n_points >= 2, "evaluate.n_points", n_points,
              "an integer >= 2 (points on each curve, both ends included)")
        check(substrate in SUBSTRATES, "evaluate.substrate", substrate, f"one of {list(SUBSTRATES)}")
        self.batch = BatchSize(batch_size, "evaluate.batch_size")  # auto: halves on out-of-memory
        check(all(b in BASELINES for b in baselines), "evaluate.baselines", list(baselines),
              f"a list of {list(BASELINES)} (compare with other explainers by sweeping explainer=...)")
        check(isinstance(sanity, bool), "evaluate.sanity", sanity, "true or false")
        check(sanity_stages in SANITY_STAGES, "evaluate.sanity_stages", sanity_stages, f"one of {list(SANITY_STAGES)}")
        check(isinstance(bootstrap, int) and bootstrap >= 100, "evaluate.bootstrap", bootstrap, "an integer >= 100")
        controls = [] if controls is None else [controls] if isinstance(controls, str) else list(controls)
        check(all(c in CONTROLS for c in controls), "evaluate.controls", controls,
              f"a list of {list(CONTROLS)} (or [] for none)")
        check(sanity_similarity in SANITY_SIMILARITIES, "evaluate.sanity_similarity", sanity_similarity,
              f"one of {list(SANITY_SIMILARITIES)}")
        self.controls, self.sanity_similarity = tuple(dict.fromkeys(controls)), sanity_similarity
        self.target, self.n_points, self.substrate, self.batch_size = target, n_points, substrate, batch_size
        self.protocol, self.baselines, self.sanity, self.bootstrap = protocol, tuple(baselines), sanity, bootstrap
        self.sanity_stages = sanity_stages
        self.similarity = similarity or ("fid" if protocol == "paper" else "ssim")
        self.y = "distance" if protocol == "paper" else "similarity"


def yardstick(name: str, models_dir: str | None = None, shapes: bool = True) -> Similarity:
    """The similarity games are scored with: the named one with its defaults; single-image FID on the Shapes
    classifier's features when that classifier is in ``models_dir`` (as ``similarity=fid``) and the model is the Shapes
    world, on DINOv2's patch features for any other model (``similarity.features=auto``), else on fixed random conv
    features."""
    if name != "fid":
        return SIMILARITIES[name]()
    if not shapes:
        from diffexplain.similarity.features import dinov2_features

        return SIMILARITIES["fid"](feature_net=dinov2_features())
    path = Path(models_dir or "") / "shapes-classifier"
    if (path / "config.json").is_file():
        from diffexplain.world.classifier import classifier_features

        return SIMILARITIES["fid"](feature_net=classifier_features(path))
    return SIMILARITIES["fid"]()


class EvaluatePipeline(ExplainPipeline):
    name = "evaluate"

    def __init__(self, schedule, explainer, similarity=None, x0_steps: str = "explained", evaluate: dict | None = None,
                 models_dir: str | None = None):
        super().__init__(schedule, explainer, similarity, x0_steps)
        self.options = EvaluateOptions(**(evaluate or {}))
        self.yardstick, self.models_dir = yardstick(self.options.similarity, models_dir), models_dir
        self.baselines: dict = {}
        self.cache: Path | None = None
        self.explainer_cache: Path | None = None

    @classmethod
    def unused(cls, config: dict) -> set[str]:
        return super().unused(config) - {"evaluate"}

    def setup(self, model: DiffusionModel) -> None:
        super().setup(model)
        if self.options.similarity == "fid" and not shapes_world(None, model.pipe.name_or_path, self.models_dir):
            self.yardstick = yardstick("fid", self.models_dir, shapes=False)  # no Shapes CNN judging other images
        self.baselines = {name: RandomExplainer(model, seed=self.explainer.seed) for name in self.options.baselines
                          if name != self.explainer.name}

    def work_units(self) -> int:
        """About how many progress units an item takes: ``explain``'s, the games of each step, and the explainer re-run
        on randomised UNets (sanity stages, the randomised control, the noise floor's second draw). An estimate: the
        runner's bar follows what the items really report."""
        o = self.options
        cascade = o.sanity and o.sanity_stages == "cascade"
        stages = len(randomisation_stages(self.explainer.model.denoiser)) if cascade else 1
        reruns = stages if o.sanity or "randomised" in o.controls else 0
        reruns += 1 if o.sanity and is_sampled(self.explainer) else 0
        return super().work_units() + len(self.steps) * (1 + reruns)

    def describe(self) -> dict:
        o = self.options
        return {**super().describe(), "evaluate": {
            "target": o.target, "similarity": self.yardstick.name, "y": o.y, "n_points": o.n_points,
            "substrate": o.substrate, "protocol": o.protocol, "baselines": list(self.baselines), "sanity": o.sanity,
            "sanity_stages": o.sanity_stages, "controls": list(o.controls), "sanity_similarity": o.sanity_similarity}}

    def use_cache(self, directory: Path, config: dict) -> None:
        """Share the baselines' rows between the jobs of a sweep: they depend on the item, the model, the schedule and
        ``evaluate``, not on the explainer, so a sweep over explainers computes them once per item and step."""
        shared = {k: config.get(k) for k in ("model", "schedule", "evaluate", "seed")}
        shared["negative_prompt"] = (config.get("data") or {}).get("negative_prompt")
        key = hashlib.sha256(json.dumps(shared, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.cache = Path(directory) / key
        # the randomised-model control depends on the explainer too
        own = {**shared, "explainer": config.get("explainer"), "similarity": config.get("similarity")}
        key = hashlib.sha256(json.dumps(own, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.explainer_cache = Path(directory) / key

    # -- one item ---------------------------------------------------------------------------------
    def run(self, model: DiffusionModel, item: PromptItem) -> ItemOutput:
        traj, out, maps, truth = self.explain_item(model, item)
        ex, sim = self.explainer, self.similarity.name if self.similarity is not None else None
        summed = ex.overall(maps, traj) if ex.per_token else maps[:, 0]  # [S, h, w]
        o = self.options
        references = [*self.baselines, *(c for c in o.controls if c != ex.name)]
        pending = [b for b in references if not self._cached(item, b)]
        base = {b: self.baselines[b].explain(traj, self.steps).float() for b in pending if b in self.baselines}
        for c in pending:
            if c in INPUT_CONTROLS:
                base[c] = torch.stack([input_maps(traj.latents[i], (c,))[c].cpu() for i in self.steps])
        stages = self.randomised_maps(model, traj, control="randomised" in pending)
        if "randomised" in pending:
            base["randomised"] = stages[randomisation_stages(model.denoiser)[-1][0]]
        fresh: dict[str, list[dict]] = {b: [] for b in pending}
        for k, i in enumerate(self.steps):
            t = out.timesteps[i]
            named = {ex.name: summed[k], **{b: base[b][k] for b in pending}}
            generator = torch.Generator().manual_seed(_seed(item.item_id, i))
            noise = None
            if o.substrate == "renoise":  # the same fresh noise for every map of the item and step
                noise = model.noise_latent(traj, i, torch.Generator().manual_seed(_seed(item.item_id, i, "renoise")))
            outcome = Outcome(model, traj, i, o.target, self.yardstick.domain == "image", "evaluate.target")
            curves = play_games(outcome, self.yardstick.to(model.device), named, GAMES, o.n_points, o.substrate,
                                generator, o.batch, o.y, noise=noise)
            self.report(1)  # the progress bar: one unit per step's games
            for name, games in curves.items():
                rows = []
                for game, curve in games.items():
                    rows.append(row(item, f"{game}_auc", curve.auc, i, t, name, sim if name == ex.name else None))
                    rows += [row(item, f"{game}_curve", y, i, t, name, sim if name == ex.name else None, x=float(x))
                             for x, y in zip(curve.x, curve.y)]
                if name == ex.name:
                    if ex.per_token:
                        rows += [row(item, m, v, i, t, name, sim) for m, v in self.localisation(summed[k], truth, None)]
                    out.rows += rows
                else:
                    rows += [row(item, m, v, i, t, name) for m, v in self.localisation(named[name], truth, None)]
                    fresh[name] += rows
        for b in references:
            out.rows += self._save(item, b, fresh[b]) if b in fresh else self._load(item, b)
        out.rows += self.correlations(item, out.timesteps, summed, truth, ex.name, sim)
        if o.sanity:
            out.rows += self.sanity(model, item, traj, out.timesteps, summed, sim, stages)
        return out

    def correlations(self, item, timesteps, maps: torch.Tensor, truth, name: str, sim) -> list[dict]:
        """Step × step Spearman/Pearson of one explainer's maps, and each map vs the prompted objects."""
        rows = []
        steps = self.steps
        for method in ("spearman", "pearson"):
            matrix = step_matrix(maps, method)
            for a in range(len(steps)):
                for b in range(a + 1, len(steps)):
                    if math.isfinite(matrix[a, b]):
                        rows.append(row(item, f"step_{method}", matrix[a, b], steps[a], timesteps[steps[a]], name, sim,
                                        other_step=steps[b]))
        mask = truth_mask(truth, None, tuple(maps.shape[-2:]))
        if mask is not None:
            for k, i in enumerate(steps):
                rho = mask_correlation(maps[k], mask, "spearman")
                if math.isfinite(rho):
                    rows.append(row(item, "truth_spearman", rho, i, timesteps[i], name, sim))
        return rows

    def randomised_maps(self, model, traj, control: bool) -> dict[str, torch.Tensor]:
        """The explainer's maps [S, h, w] (summed over words) on cumulatively re-initialised UNets, per cascade stage:
        the stages the sanity check needs (every one, or with ``sanity_stages=full`` the last), and the last for the
        randomised-model control (``control``); {} when neither is needed."""
        o = self.options
        if not (o.sanity or control):
            return {}
        every = o.sanity and o.sanity_stages == "cascade"
        last = randomisation_stages(model.denoiser)[-1][0]
        out = {}
        for stage, randomised in cascading_randomisation(model, seed=self.explainer.seed):
            if not every and stage != last:
                continue
            explainer = self.make_explainer(model=randomised, similarity=self.similarity, seed=self.randomised_seed)
            other = explainer.explain(traj, self.steps).float()
            out[stage] = explainer.overall(other, traj).cpu()
        return out

    @property
    def randomised_seed(self) -> int:
        """The seed of the randomised model's explainer: for a sampled explainer a draw independent of the trained
        map's (seed) and of the noise floor's (seed + 1) — with shared masks, their common sampling noise would raise
        ρ above what the weights explain; a deterministic explainer ignores it."""
        return self.explainer.seed + 2 if is_sampled(self.explainer) else self.explainer.seed

    def sanity(self, model, item, traj, timesteps, maps: torch.Tensor, sim, stages: dict) -> list[dict]:
        """``evaluate.sanity_similarity`` (ρ) between the trained model's maps and those of cumulatively re-initialised
        UNets (``stages``: :meth:`randomised_maps`), and the noise floor: the same similarity between two independent
        draws of the trained model's map (for a sampled explainer the explainer re-run with seed + 1; a deterministic
        map's floor is 1)."""
        rows, how, name = [], self.options.sanity_similarity, self.explainer.name
        for stage, other in stages.items():
            for k, i in enumerate(self.steps):
                rho = map_similarity(maps[k], other[k], how)
                if math.isfinite(rho):
                    rows.append(row(item, "sanity_rho", rho, i, timesteps[i], name, sim, stage=stage))
        if is_sampled(self.explainer):
            again = self.make_explainer(model=model, similarity=self.similarity, seed=self.explainer.seed + 1)
            draw = again.explain(traj, self.steps).float()
            draw = again.overall(draw, traj)
            floors = [map_similarity(maps[k], draw[k], how) for k in range(len(self.steps))]
        else:
            floors = [1.0] * len(self.steps)
        rows += [row(item, "sanity_floor", f, i, timesteps[i], name, sim) for f, i in zip(floors, self.steps)
                 if math.isfinite(f)]
        return rows

    # -- the baselines' rows, shared across a sweep -------------------------------------------------
    def _path(self, item, name: str) -> Path | None:
        cache = self.explainer_cache if name == "randomised" else self.cache
        return None if cache is None else cache / name / f"{item.item_id}.parquet"

    def _cached(self, item, name: str) -> bool:
        path = self._path(item, name)
        if path is None or not path.is_file():
            return False
        try:
            have = set(pd.read_parquet(path, columns=["step_index"]).step_index.dropna().astype(int))
        except Exception:
            return False
        return set(self.steps) <= have

    def _save(self, item, name: str, rows: list[dict]) -> list[dict]:
        path = self._path(item, name)
        if path is not None:
            with io.atomic_path(path) as tmp:
                to_frame(rows, self.columns).to_parquet(tmp, index=False)
        return rows

    def _load(self, item, name: str) -> list[dict]:
        """A baseline's rows of this item's steps from the sweep's cache."""
        df = pd.read_parquet(self._path(item, name))
        df = df[df.step_index.isin(self.steps)]
        return [{k: (None if _missing(v) else v) for k, v in r.items()} for r in df.to_dict("records")]

    # -- the job ------------------------------------------------------------------------------------
    def tables(self, results: pd.DataFrame) -> dict[str, pd.DataFrame]:
        return evaluation.tables(results, self.num_steps, self.options.bootstrap, self.options.protocol)

    def job_figures(self, results: pd.DataFrame, fig_dir: Path) -> list[Path]:
        return evaluation.figures(results, self.num_steps, fig_dir)


def _seed(item_id: str, step: int, purpose: str = "games") -> int:
    """Seed of the games' tie-breaking (``purpose="games"``) or of the renoise substrate's noise (``"renoise"``) for
    one item and step (the same in every job, so cached rows match)."""
    return int(hashlib.sha1(f"{purpose}|{item_id}|{step}".encode()).hexdigest()[:15], 16)


def is_sampled(explainer) -> bool:
    """Whether the explainer's map is a Monte-Carlo estimate that changes with its seed (DF-RISE, GradientSHAP, LIME,
    a Captum explainer with ``baseline=noise``); the others are deterministic, with reliability and noise floor 1."""
    return bool(getattr(explainer, "sampled", False)) or getattr(explainer, "baseline", None) == "noise"


def _missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))
