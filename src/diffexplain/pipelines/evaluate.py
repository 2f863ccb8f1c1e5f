"""``pipeline=evaluate`` (the default job): explain the chosen steps, then measure how far each map can be trusted.

Per item, on top of ``pipeline=explain``'s maps and localisation rows, for the explainer's map (per-token explainers:
summed over words) and for the baselines' maps (``random``, computed once per item and, inside a sweep, cached for
every job that shares the item):

- deletion and insertion games on z_t at each explained step (:mod:`diffexplain.metrics.games`), scored with
  ``evaluate.similarity`` on ``evaluate.target``: rows ``deletion_curve``/``insertion_curve`` (x in column ``x``)
  and ``deletion_auc`` (lower is better) / ``insertion_auc`` (higher is better);
- localisation of the baselines' maps against the Shapes objects (the explainer's are ``explain``'s rows);
- step correlations: ``step_spearman``/``step_pearson`` between every pair of explained steps (second step in
  ``other_step``) and ``truth_spearman`` of each map with the prompted objects;
- with ``evaluate.sanity=true``, the model-parameter randomisation test (Adebayo et al., 2018): the explainer re-run
  on UNets re-initialised cumulatively from the output side, rows ``sanity_rho`` (cascade stage in ``stage``).

Job-level tables (AUC with bootstrap CIs and the paired comparison with ``random``, localisation, sanity) and figures
are drawn from the rows (:mod:`diffexplain.reporting.evaluation`).
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
from diffexplain.errors import check
from diffexplain.explainers import RandomExplainer
from diffexplain.items import PromptItem
from diffexplain.metrics.correlation import mask_correlation, step_matrix
from diffexplain.metrics.games import GAMES, play_games
from diffexplain.metrics.sanity import cascading_randomisation, randomisation_stages, sanity_rho
from diffexplain.models import DiffusionModel
from diffexplain.models.outcomes import TARGETS, Outcome
from diffexplain.pipelines.base import ItemOutput
from diffexplain.pipelines.explain import ExplainPipeline, truth_mask
from diffexplain.reporting import evaluation
from diffexplain.reporting.tables import row, to_frame
from diffexplain.similarity import SIMILARITIES, Similarity

PROTOCOLS = ("per_prompt", "paper")
SUBSTRATES = ("zeros", "blur", "mean")
BASELINES = ("random",)
SANITY_STAGES = ("cascade", "full")


class EvaluateOptions:
    """``evaluate.*`` (see conf/config.yaml)."""

    def __init__(self, target: str = "output", similarity: str | None = None, n_points: int = 17,
                 substrate: str = "zeros", batch_size: int = 64, baselines=("random",), protocol: str = "per_prompt",
                 sanity: bool = False, sanity_stages: str = "cascade", bootstrap: int = 10_000):
        check(target in TARGETS, "evaluate.target", target, f"one of {list(TARGETS)}")
        check(similarity is None or similarity in SIMILARITIES, "evaluate.similarity", similarity,
              f"one of {list(SIMILARITIES)} or null (ssim; fid under evaluate.protocol=paper)")
        check(protocol in PROTOCOLS, "evaluate.protocol", protocol, f"one of {list(PROTOCOLS)}")
        check(protocol != "paper" or similarity in (None, "fid"), "evaluate.similarity", similarity,
              "'fid' or null under evaluate.protocol=paper (the paper scores single-image FID)")
        check(isinstance(n_points, int) and n_points >= 2, "evaluate.n_points", n_points,
              "an integer >= 2 (points on each curve, both ends included)")
        check(substrate in SUBSTRATES, "evaluate.substrate", substrate, f"one of {list(SUBSTRATES)}")
        check(isinstance(batch_size, int) and batch_size >= 1, "evaluate.batch_size", batch_size, "an integer >= 1")
        check(all(b in BASELINES for b in baselines), "evaluate.baselines", list(baselines),
              f"a list of {list(BASELINES)} (compare with other explainers by sweeping explainer=...)")
        check(isinstance(sanity, bool), "evaluate.sanity", sanity, "true or false")
        check(sanity_stages in SANITY_STAGES, "evaluate.sanity_stages", sanity_stages, f"one of {list(SANITY_STAGES)}")
        check(isinstance(bootstrap, int) and bootstrap >= 100, "evaluate.bootstrap", bootstrap, "an integer >= 100")
        self.target, self.n_points, self.substrate, self.batch_size = target, n_points, substrate, batch_size
        self.protocol, self.baselines, self.sanity, self.bootstrap = protocol, tuple(baselines), sanity, bootstrap
        self.sanity_stages = sanity_stages
        self.similarity = similarity or ("fid" if protocol == "paper" else "ssim")
        self.y = "distance" if protocol == "paper" else "similarity"


def yardstick(name: str, models_dir: str | None = None) -> Similarity:
    """The similarity games are scored with: the named one with its defaults; single-image FID on the Shapes
    classifier's features when that classifier is in ``models_dir`` (as ``similarity=fid``), else on fixed random
    conv features."""
    if name != "fid":
        return SIMILARITIES[name]()
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
        self.yardstick = yardstick(self.options.similarity, models_dir)
        self.baselines: dict = {}
        self.cache: Path | None = None

    def setup(self, model: DiffusionModel) -> None:
        super().setup(model)
        self.baselines = {name: RandomExplainer(model, seed=self.explainer.seed) for name in self.options.baselines
                          if name != self.explainer.name}

    def describe(self) -> dict:
        o = self.options
        return {**super().describe(), "evaluate": {
            "target": o.target, "similarity": self.yardstick.name, "y": o.y, "n_points": o.n_points,
            "substrate": o.substrate, "protocol": o.protocol, "baselines": list(self.baselines), "sanity": o.sanity,
            "sanity_stages": o.sanity_stages}}

    def use_cache(self, directory: Path, config: dict) -> None:
        """Share the baselines' rows between the jobs of a sweep: they depend on the item, the model, the schedule and
        ``evaluate``, not on the explainer, so a sweep over explainers computes them once per item and step."""
        shared = {k: config.get(k) for k in ("model", "schedule", "evaluate", "seed")}
        shared["negative_prompt"] = (config.get("data") or {}).get("negative_prompt")
        key = hashlib.sha256(json.dumps(shared, sort_keys=True, default=str).encode()).hexdigest()[:16]
        self.cache = Path(directory) / key

    # -- one item ---------------------------------------------------------------------------------
    def run(self, model: DiffusionModel, item: PromptItem) -> ItemOutput:
        traj, out, maps, truth = self.explain_item(model, item)
        ex, sim = self.explainer, self.similarity.name if self.similarity is not None else None
        summed = maps.sum(1)  # [S, h, w]: per-token explainers summed over words
        pending = [b for b in self.baselines if not self._cached(item, b)]
        base = {b: self.baselines[b].explain(traj, self.steps).float() for b in pending}
        fresh: dict[str, list[dict]] = {b: [] for b in pending}
        for k, i in enumerate(self.steps):
            t = out.timesteps[i]
            named = {ex.name: summed[k], **{b: base[b][k] for b in pending}}
            generator = torch.Generator().manual_seed(_seed(item.item_id, i))
            outcome = Outcome(model, traj, i, self.options.target, self.yardstick.domain == "image", "evaluate.target")
            curves = play_games(outcome, self.yardstick.to(model.device), named, GAMES, self.options.n_points,
                                self.options.substrate, generator, self.options.batch_size, self.options.y)
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
        for b in self.baselines:
            out.rows += self._save(item, b, fresh[b]) if b in fresh else self._load(item, b)
        out.rows += self.correlations(item, out.timesteps, summed, truth, ex.name, sim)
        if self.options.sanity:
            out.rows += self.sanity(model, item, traj, out.timesteps, summed, sim)
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

    def sanity(self, model, item, traj, timesteps, maps: torch.Tensor, sim) -> list[dict]:
        """Spearman ρ between the trained model's maps and those of cumulatively re-initialised UNets (every stage of
        the cascade, or with ``sanity_stages=full`` only the fully re-initialised UNet)."""
        rows = []
        last = randomisation_stages(model.unet)[-1][0]
        for stage, randomised in cascading_randomisation(model, seed=self.explainer.seed):
            if self.options.sanity_stages == "full" and stage != last:
                continue
            explainer = self.make_explainer(model=randomised, similarity=self.similarity)
            other = explainer.explain(traj, self.steps).float()
            other = other.sum(1) if explainer.per_token else other
            for k, i in enumerate(self.steps):
                rho = sanity_rho(maps[k], other[k])
                if math.isfinite(rho):
                    rows.append(row(item, "sanity_rho", rho, i, timesteps[i], self.explainer.name, sim, stage=stage))
        return rows

    # -- the baselines' rows, shared across a sweep -------------------------------------------------
    def _path(self, item, name: str) -> Path | None:
        return None if self.cache is None else self.cache / name / f"{item.item_id}.parquet"

    def _cached(self, item, name: str) -> bool:
        path = self._path(item, name)
        if path is None or not path.is_file():
            return False
        try:
            have = set(pd.read_parquet(path, columns=["step_index"]).step_index.dropna().astype(int))
        except Exception:  # noqa: BLE001  (an unreadable cache entry is recomputed)
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


def _seed(item_id: str, step: int) -> int:
    """Seed of the games' tie-breaking for one item and step (the same in every job, so cached rows match)."""
    return int(hashlib.sha1(f"games|{item_id}|{step}".encode()).hexdigest()[:15], 16)


def _missing(v) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v))
