"""The one interface every explainer implements (Captum-like: construct with the model, then ``explain``)."""

from __future__ import annotations

import hashlib

import torch

from diffexplain.errors import check
from diffexplain.models import DiffusionModel, Trajectory
from diffexplain.similarity import Similarity


class Explainer:
    """Explain chosen steps of a trajectory: ``explain(trajectory, steps) -> Tensor[len(steps), h, w]``.

    Maps live on the latent grid (h × w of the latent). Per-token explainers (``per_token = True``) return
    ``[len(steps), K, h, w]`` for the K words of :meth:`words`. Explainers are pure: no files, no logging, no global
    RNG — randomness comes from :meth:`generator`, seeded by (``seed``, trajectory seed, step).
    """

    name = "explainer"
    per_token = False

    def __init__(self, model: DiffusionModel, similarity: Similarity | None = None, steps=None, seed: int = 0):
        self.model = model
        self.similarity = similarity
        self.steps = steps
        self.seed = int(seed)

    def describe(self) -> dict:
        """What this explainer resolved from its config (e.g. DF-CAM's module names), recorded in ``run.json``."""
        return {}

    def explain(self, trajectory: Trajectory, steps: list[int] | None = None) -> torch.Tensor:
        steps = trajectory.check_steps(self.steps if steps is None else steps)
        return torch.stack([self.explain_step(trajectory, i) for i in steps])

    def explain_step(self, trajectory: Trajectory, i: int) -> torch.Tensor:
        raise NotImplementedError

    def generator(self, trajectory: Trajectory, i: int) -> torch.Generator:
        """A CPU generator for step ``i``: the same masks/noise on every device, independent of other steps."""
        key = f"{self.name}|{self.seed}|{trajectory.seed}|{trajectory.prompt}|{i}".encode()
        return torch.Generator("cpu").manual_seed(int(hashlib.sha1(key).hexdigest()[:15], 16))


def check_in(key: str, value, allowed) -> None:
    check(value in allowed, key, value, f"one of {list(allowed)}")
