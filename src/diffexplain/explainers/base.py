"""The one interface every explainer implements (Captum-like: construct with the model, then ``explain``)."""

from __future__ import annotations

import hashlib

import torch

from diffexplain.errors import check
from diffexplain.models import DiffusionModel, Trajectory
from diffexplain.similarity import Similarity


def no_progress(units: float) -> None:
    """The default :attr:`Explainer.progress`: nobody is listening."""


class Explainer:
    """Explain chosen steps of a trajectory: ``explain(trajectory, steps) -> Tensor[len(steps), h, w]``.

    Maps live on the latent grid (h × w of the latent). Per-token explainers (``per_token = True``) return
    ``[len(steps), K, h, w]`` for the K words of :meth:`words`. Explainers are pure: no files, no logging, no global
    RNG — randomness comes from :meth:`generator`, seeded by (``seed``, trajectory seed, step).
    """

    name = "explainer"
    per_token = False
    #: Called with the explained steps' worth of work done (fractions within a step), like Captum's
    #: ``show_progress``; the caller (the pipeline) sets it to drive a progress bar. The default does nothing.
    progress = staticmethod(no_progress)
    _reported = 0.0

    def __init__(self, model: DiffusionModel, similarity: Similarity | None = None, steps=None, seed: int = 0):
        self.model = model
        self.similarity = similarity
        self.steps = steps
        self.seed = int(seed)

    @classmethod
    def uses_similarity(cls, config: dict) -> bool:
        """Whether ``similarity=`` can change this explainer's maps, given its config node (``explainer.*``; an
        instance's attributes carry the same names). When it cannot, the similarity is no part of a job's results:
        the result fingerprint (resume, reuse within a sweep) and the rows leave it out."""
        return True

    def describe(self) -> dict:
        """What this explainer resolved from its config (e.g. DF-CAM's module names), recorded in ``run.json``."""
        return {}

    def overall(self, maps: torch.Tensor, trajectory: Trajectory) -> torch.Tensor:
        """One map per step [S, h, w] from :meth:`explain`'s output, the one the games, localisation and sanity
        check score: the map itself, or a per-token explainer's maps summed over its words."""
        return maps.sum(1) if self.per_token else maps

    def explain(self, trajectory: Trajectory, steps: list[int] | None = None) -> torch.Tensor:
        steps = trajectory.check_steps(self.steps if steps is None else steps)
        maps = []
        for i in steps:
            self._reported = 0.0
            maps.append(self.explain_step(trajectory, i))
            self.report(1.0 - self._reported)  # what the step did not report itself
        return torch.stack(maps)

    def report(self, fraction: float) -> None:
        """Tell :attr:`progress` that ``fraction`` of one explained step's work is done. Long steps call it as they go
        (DF-RISE after each mask batch); :meth:`explain` reports whatever a step left, so each step counts 1."""
        if fraction > 1e-6:
            self._reported += fraction
            self.progress(fraction)

    def explain_step(self, trajectory: Trajectory, i: int) -> torch.Tensor:
        raise NotImplementedError

    def generator(self, trajectory: Trajectory, i: int) -> torch.Generator:
        """A CPU generator for step ``i``: the same masks/noise on every device, independent of other steps."""
        key = f"{self.name}|{self.seed}|{trajectory.seed}|{trajectory.prompt}|{i}".encode()
        return torch.Generator("cpu").manual_seed(int(hashlib.sha1(key).hexdigest()[:15], 16))


def check_in(key: str, value, allowed) -> None:
    check(value in allowed, key, value, f"one of {list(allowed)}")
