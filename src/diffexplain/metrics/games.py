"""Deletion and insertion games (Petsiuk et al., 2018) on the latent z_t of one denoising step, and their AUC.

Latent pixels (all channels together) are ranked by a saliency map, high first (ties broken by a seeded
generator). For ``n_points`` pixel counts k_j = round(j·P / (n_points − 1)), j = 0 … n_points − 1 (P = h·w pixels,
groups of equal size when n_points − 1 divides P):

- deletion: z_t with its k most salient pixels replaced by a substrate (zeros | blur | mean | renoise);
- insertion: the blurred z_t (Gaussian, 11 taps, σ 5) with its k most salient pixels restored to z_t; with the
  ``renoise`` substrate, the fully re-noised latent (fresh noise at the step's noise level, ``noise``) instead.

Each perturbed latent goes through the step's :class:`~diffexplain.models.outcomes.Outcome` (one guided UNet
evaluation + scheduler step / x0 / rollout) and is scored against the unperturbed outcome:
y = similarity(outcome, reference) — or, with ``y="distance"``, the similarity's distance (single-image FID, the
paper's y, lower = closer). x = k / P is the share of pixels deleted or inserted.

Directions (y a similarity): deletion — *lower* AUC is better (the map ranks first what the outcome depends on);
insertion — *higher* AUC is better. With y a distance both directions reverse (:func:`higher_is_better`).

Every point of every curve (all maps, both games) is streamed through the outcome in chunks of ``batch_size``
latents (``auto`` or a :class:`~diffexplain.models.batching.BatchSize`: halved on out-of-memory), so memory is flat
in ``n_points`` and in the number of maps; latents that several curves share (z_t, the substrate, the blurred start)
are evaluated once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from diffexplain.config.options import SUBSTRATES
from diffexplain.errors import check
from diffexplain.metrics.ranking import pixel_ranks
from diffexplain.metrics.substrates import blur
from diffexplain.metrics.substrates import substrate as make_substrate
from diffexplain.models.batching import BatchSize

GAMES = ("deletion", "insertion")
YS = ("similarity", "distance")


@dataclass(frozen=True)
class Curve:
    """One game's curve: ``x`` share of pixels deleted/inserted in [0, 1] (float64), ``y`` scores (float32)."""

    x: np.ndarray
    y: np.ndarray

    @property
    def auc(self) -> float:
        return auc(self.x, self.y)


def higher_is_better(game: str, y: str = "similarity") -> bool:
    """Direction of a game's AUC: insertion with a similarity and deletion with a distance are higher-is-better."""
    check(game in GAMES, "game", game, f"one of {list(GAMES)}")
    check(y in YS, "y", y, f"one of {list(YS)}")
    return (game == "insertion") == (y == "similarity")


def auc(x, y=None) -> float:
    """Normalised area under a curve: the trapezoid area divided by the width of ``x``.

    With ``y`` omitted, ``x`` holds the y values on a uniform grid over [0, 1] and the result is the papers'
    (Σ y − y_0/2 − y_last/2) / (n − 1); on a curve over [0, 1] the two forms agree.
    """
    if y is None:
        y, x = np.asarray(x, dtype=np.float64), np.linspace(0.0, 1.0, len(x))
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    check(x.ndim == 1 and x.shape == y.shape and len(x) >= 2, "curve", f"x{x.shape} y{y.shape}",
          "1-d x and y of equal length >= 2")
    check(bool(np.all(np.diff(x) > 0)), "curve.x", "not increasing", "strictly increasing x")
    return float(np.trapezoid(y, x) / (x[-1] - x[0]))


def mean_curve(curves: Iterable[Curve], normalise: bool = False) -> Curve:
    """The mean of curves over items (same ``x``); ``normalise`` min-max scales the mean to [0, 1] (a flat mean
    curve gives NaN)."""
    curves = list(curves)
    check(len(curves) > 0 and all(np.array_equal(c.x, curves[0].x) for c in curves), "curves", len(curves),
          "at least one curve, all on the same x")
    y = np.mean([c.y for c in curves], axis=0, dtype=np.float64)
    if normalise:
        span = y.max() - y.min()
        y = (y - y.min()) / span if span > 0 else np.full_like(y, np.nan)
    return Curve(curves[0].x, y.astype(np.float32))


def paper_auc(curves: Iterable[Curve]) -> float:
    """The authors' protocol: AUC of the mean curve over prompts, min-max normalised (``protocol=paper``)."""
    return mean_curve(curves, normalise=True).auc


def pixel_counts(n_pixels: int, n_points: int) -> np.ndarray:
    """k_j = round(j · P / (n_points − 1)): pixels perturbed at each point, 0 … P."""
    check(isinstance(n_points, int) and 2 <= n_points <= n_pixels + 1, "n_points", n_points,
          f"an integer in [2, {n_pixels + 1}] (points including x=0 and x=1 on a {n_pixels}-pixel latent)")
    return np.rint(np.arange(n_points) * n_pixels / (n_points - 1)).astype(np.int64)


@torch.no_grad()
def play_games(outcome, similarity, maps: dict[str, torch.Tensor], games: Iterable[str] = GAMES,
               n_points: int = 17, substrate: str = "zeros", generator: torch.Generator | None = None,
               batch_size: int | str | BatchSize = 64, y: str = "similarity",
               latent: torch.Tensor | None = None, noise: torch.Tensor | None = None) -> dict[str, dict[str, Curve]]:
    """Deletion/insertion curves of every map: ``{map name: {game: Curve}}``.

    ``outcome``: an :class:`~diffexplain.models.outcomes.Outcome` (``outcome(latents) -> [N, ...]``,
    ``outcome.reference()``); ``similarity(a, b) -> [B]`` (``y="distance"``: ``similarity.distance``);
    ``maps``: saliency maps [h, w] on the latent grid; ``latent``: z_t [C, h, w] (default: the outcome's
    trajectory's latent at its step); ``generator``: CPU generator breaking ties in the pixel order, used by the
    maps in order (None = seed 0); ``noise``: the pure-noise latent [C, h, w] of the step for
    ``substrate="renoise"`` (:meth:`~diffexplain.models.DiffusionModel.noise_latent`; the same for every map).
    """
    games = tuple(games)
    check(len(games) > 0 and set(games) <= set(GAMES), "games", list(games), f"a non-empty subset of {list(GAMES)}")
    check(substrate in SUBSTRATES, "substrate", substrate, f"one of {list(SUBSTRATES)}")
    check(y in YS, "y", y, f"one of {list(YS)}")
    check(y == "similarity" or hasattr(similarity, "distance"), "y", y,
          f"'similarity' for {type(similarity).__name__} (it has no distance; similarity=fid has)")
    batches = batch_size if isinstance(batch_size, BatchSize) else BatchSize(batch_size)
    z = outcome.trajectory.latents[outcome.i] if latent is None else latent
    z = z.detach()[None]
    h, w = z.shape[-2:]
    for name, m in maps.items():
        check(tuple(m.shape) == (h, w), "maps", f"{name}: {tuple(m.shape)}",
              f"maps [h, w] = [{h}, {w}] (the latent grid)")
    counts = pixel_counts(h * w, n_points)
    generator = torch.Generator().manual_seed(0) if generator is None else generator
    ranks = {name: pixel_ranks(m, generator).to(z.device) for name, m in maps.items()}

    # Each game moves from a start latent (k = 0) to an end latent (k = P); the top-k pixels take the end's values.
    sources = {"z": z, "blur": blur(z), substrate: make_substrate(z, substrate, noise=noise)}
    ends = {"deletion": ("z", substrate), "insertion": ("renoise" if substrate == "renoise" else "blur", "z")}
    slots: dict[tuple[str, str], list[int]] = {}
    jobs: dict[object, int] = {}
    for name in maps:
        for game in games:
            keys = [ends[game][0] if k == 0 else ends[game][1] if k == h * w else (name, game, int(k)) for k in counts]
            slots[name, game] = [jobs.setdefault(key, len(jobs)) for key in keys]

    def latent_of(key) -> torch.Tensor:
        if isinstance(key, str):
            return sources[key][0]
        name, game, k = key
        start, end = (sources[s][0] for s in ends[game])
        return torch.where(ranks[name] < k, end, start)

    reference = outcome.reference().float()
    score = similarity.distance if y == "distance" else similarity
    if isinstance(similarity, torch.nn.Module):
        similarity.to(reference.device)
    values = np.empty(len(jobs), dtype=np.float32)
    keys = list(jobs)

    def run(start: int, stop: int) -> None:
        batch = torch.stack([latent_of(k) for k in keys[start:stop]])
        values[start:stop] = score(outcome(batch).float(), reference).float().cpu().numpy()

    batches.run(len(keys), run)

    x = counts / (h * w)
    return {name: {game: Curve(x, values[slots[name, game]]) for game in games} for name in maps}
