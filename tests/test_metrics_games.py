import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from diffexplain.errors import UserError
from diffexplain.metrics.games import Curve, auc, higher_is_better, mean_curve, paper_auc, pixel_counts, play_games
from diffexplain.metrics.ranking import pixel_order
from diffexplain.metrics.substrates import blur, substrate
from diffexplain.models import DiffusionModel
from diffexplain.models.outcomes import Outcome
from diffexplain.schedules import Uniform
from diffexplain.similarity import SSIM, Cosine, SingleImageFID

PROMPT = "a red circle and a blue square"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def traj(tiny):
    return tiny.generate(PROMPT, 0, Uniform(4))


class ToyOutcome:
    """``outcome(latents) = fn(latents)`` for a fixed z_t; records the batch sizes it is called with."""

    def __init__(self, z, fn=lambda x: x):
        self.trajectory, self.i, self.fn, self.batches = SimpleNamespace(latents=z[None]), 0, fn, []

    def __call__(self, latents):
        self.batches.append(len(latents))
        return self.fn(latents)

    def reference(self):
        return self.fn(self.trajectory.latents[:1])


def neg_sq_error(a, b):
    """An additive similarity: −Σ (a − b)², a sum of per-pixel terms."""
    return -((a - b) ** 2).flatten(1).sum(1)


# -- AUC -------------------------------------------------------------------------------------------
def test_auc_of_known_curves():
    x = np.linspace(0, 1, 17)
    assert auc(x, x) == pytest.approx(0.5)
    assert auc(x, np.full(17, 0.3)) == pytest.approx(0.3)
    fine = np.linspace(0, 1, 2001)
    assert auc(fine, fine ** 2) == pytest.approx(1 / 3, abs=1e-6)
    assert auc([0, 0.25, 1], [0, 1, 1]) == pytest.approx(0.125 + 0.75), "non-uniform x: the general trapezoid"


def test_auc_on_a_uniform_grid_is_the_papers_normalised_sum():
    y = np.random.default_rng(0).random(65)
    assert auc(y) == pytest.approx((y.sum() - y[0] / 2 - y[-1] / 2) / 64)
    assert auc(np.linspace(0, 1, 65), y) == pytest.approx(auc(y))


def test_auc_rejects_malformed_curves():
    with pytest.raises(UserError, match="curve"):
        auc([0, 1], [1, 2, 3])
    with pytest.raises(UserError, match="curve.x"):
        auc([0, 0.5, 0.5, 1], [1, 2, 3, 4])


def test_paper_protocol_averages_then_min_max_normalises():
    x = np.linspace(0, 1, 3)
    curves = [Curve(x, np.array([2, 1, 0], np.float32)), Curve(x, np.array([4, 3, 2], np.float32))]
    np.testing.assert_allclose(mean_curve(curves).y, [3, 2, 1])
    np.testing.assert_allclose(mean_curve(curves, normalise=True).y, [1, 0.5, 0])
    assert paper_auc(curves) == pytest.approx(0.5)
    assert math.isnan(paper_auc([Curve(x, np.ones(3, np.float32))]))
    with pytest.raises(UserError, match="curves"):
        mean_curve([Curve(x, np.ones(3)), Curve(x / 2, np.ones(3))])


def test_directions():
    assert not higher_is_better("deletion") and higher_is_better("insertion")
    assert higher_is_better("deletion", "distance") and not higher_is_better("insertion", "distance")


# -- pixel order and substrates -----------------------------------------------------------------
def test_pixel_order_is_high_first_with_seeded_random_ties():
    s = torch.tensor([[0.1, 0.9], [0.5, 0.5]])
    orders = {tuple(pixel_order(s, torch.Generator().manual_seed(k)).tolist()) for k in range(20)}
    assert orders == {(1, 2, 3, 0), (1, 3, 2, 0)}, "ties (the two 0.5) in both orders, never raster order only"
    flat = torch.zeros(8, 8)
    a, b = (pixel_order(flat, torch.Generator().manual_seed(k)) for k in (1, 1))
    assert torch.equal(a, b) and not torch.equal(a, torch.arange(64))


def test_substrates():
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(substrate(z, "zeros"), torch.zeros_like(z))
    assert torch.allclose(substrate(z, "mean")[0, :, 3, 5], z.mean(dim=(-2, -1))[0])
    assert torch.allclose(blur(torch.full((1, 2, 16, 16), 3.0)), torch.full((1, 2, 16, 16), 3.0))
    b = blur(z)
    assert b.shape == z.shape and b.std() < z.std() / 2, "blurring removes most of white noise's variance"
    with pytest.raises(UserError, match="substrate"):
        substrate(z, "noise")


# -- the games ----------------------------------------------------------------------------------
def test_points_include_both_ends_in_equal_groups():
    assert pixel_counts(64, 17).tolist() == list(range(0, 65, 4))
    assert pixel_counts(256, 17).tolist() == list(range(0, 257, 16))
    k = pixel_counts(64, 10)
    assert k[0] == 0 and k[-1] == 64 and set(np.diff(k)) <= {7, 8}
    with pytest.raises(UserError, match="n_points"):
        pixel_counts(64, 66)


def region_model(tiny, region):
    """The tiny pipeline whose step outcome is z ⊙ region: the outcome depends on the latent inside ``region`` only."""
    model = DiffusionModel(tiny.pipe)
    model.unet_output = lambda latents, t, cond: latents * region
    model.step = lambda trajectory, i, output, latents: output
    return model


def test_a_perfect_oracle_map_beats_a_reversed_one(tiny, traj):
    region = torch.zeros(8, 8)
    region[2:5, 3:7] = 1  # 12 of 64 pixels
    outcome = Outcome(region_model(tiny, region), traj, 1, "next_latent")
    oracle = region + 0.01 * torch.rand(8, 8, generator=torch.Generator().manual_seed(0))
    curves = play_games(outcome, Cosine(), {"oracle": oracle, "reversed": -oracle}, n_points=17)
    od, oi = curves["oracle"]["deletion"], curves["oracle"]["insertion"]
    rd, ri = curves["reversed"]["deletion"], curves["reversed"]["insertion"]
    assert od.y[0] == pytest.approx(1, abs=1e-5) and od.y[-1] == pytest.approx(0, abs=1e-5)
    assert od.y[3] == pytest.approx(0, abs=1e-5), "the region (12 px) is gone after the oracle's first 12 pixels"
    assert np.all(rd.y[:14] > 1 - 1e-5), "the reversed order deletes the 52 irrelevant pixels first"
    assert od.auc < 0.15 < 0.75 < rd.auc
    assert oi.y[3] == pytest.approx(1, abs=1e-5) and oi.auc > ri.auc + 0.5


def test_real_model_oracle_of_single_pixel_effects_beats_its_reverse(tiny, traj):
    """On the real tiny model: rank pixels by how much deleting each alone changes the outcome."""
    outcome, sim, z = Outcome(tiny, traj, 2, "next_latent"), SSIM(), traj.latents[2]
    eye = torch.eye(64).view(64, 1, 8, 8)
    with torch.no_grad():
        effect = (1 - sim(outcome(z * (1 - eye)).float(), outcome.reference().float())).view(8, 8)
    curves = play_games(outcome, sim, {"oracle": effect, "reversed": -effect}, games=["deletion"])
    assert curves["oracle"]["deletion"].auc < curves["reversed"]["deletion"].auc - 0.2


@pytest.mark.parametrize("game", ["deletion", "insertion"])
def test_a_random_order_gives_the_straight_line_auc_on_an_additive_outcome(game):
    """With y a sum of per-pixel terms, the expected curve of a uniformly random order is linear: E[AUC] = (y0+y1)/2."""
    z = torch.randn(4, 8, 8, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    maps = {f"r{k}": torch.rand(8, 8, generator=g) for k in range(400)}
    curves = play_games(ToyOutcome(z), neg_sq_error, maps, games=[game], generator=g, batch_size=4096)
    aucs = np.array([c[game].auc for c in curves.values()])
    y0, y1 = curves["r0"][game].y[[0, -1]]
    expected = (y0 + y1) / 2
    assert abs(aucs.mean() - expected) < 4 * aucs.std() / np.sqrt(len(aucs))
    assert abs(aucs.mean() - expected) < 0.01 * abs(y1 - y0)
    assert aucs.std() > 0.01 * abs(y1 - y0), "the orders do differ"


def test_all_points_of_all_maps_and_games_share_chunked_evaluations(tiny, traj):
    z = traj.latents[1]
    toy = ToyOutcome(z)
    maps = {"a": torch.rand(8, 8), "b": torch.rand(8, 8)}
    curves = play_games(toy, neg_sq_error, maps, n_points=17, batch_size=10)
    unique = 2 * 2 * 15 + 3  # inner points per map and game + z_t, zeros, blurred z_t
    assert sum(toy.batches) == unique and max(toy.batches) == 10 and len(toy.batches) == math.ceil(unique / 10)
    for game in ("deletion", "insertion"):
        assert curves["a"][game].y[[0, -1]].tolist() == curves["b"][game].y[[0, -1]].tolist()
    assert curves["a"]["deletion"].y[0] == curves["a"]["insertion"].y[-1] == 0, "z_t itself: no change"
    np.testing.assert_array_equal(curves["a"]["deletion"].x, np.arange(17) / 16)
    assert curves["a"]["deletion"].y.dtype == np.float32


def test_deletion_substrates_reach_their_substrate(traj):
    z = traj.latents[1]
    for kind in ("zeros", "mean", "blur"):
        toy = ToyOutcome(z)
        curves = play_games(toy, neg_sq_error, {"m": torch.rand(8, 8)}, games=["deletion"], substrate=kind)
        end = curves["m"]["deletion"].y[-1]
        assert end == pytest.approx(neg_sq_error(substrate(z[None], kind), z[None]).item(), rel=1e-5)


def test_curves_do_not_depend_on_batch_size_and_are_seeded(tiny, traj):
    outcome = Outcome(tiny, traj, 1, "next_latent")
    maps = {"m": torch.rand(8, 8, generator=torch.Generator().manual_seed(0)), "flat": torch.zeros(8, 8)}

    def run(batch_size, seed):
        return play_games(outcome, SSIM(), maps, n_points=9, batch_size=batch_size,
                          generator=torch.Generator().manual_seed(seed))

    a, b, c = run(5, 0), run(64, 0), run(64, 1)
    for name in maps:
        for game in ("deletion", "insertion"):
            np.testing.assert_allclose(a[name][game].y, b[name][game].y, atol=1e-5)
    assert np.array_equal(b["m"]["deletion"].y, c["m"]["deletion"].y), "no ties: the seed does not matter"
    assert not np.array_equal(b["flat"]["deletion"].y, c["flat"]["deletion"].y), "a flat map: a seeded random order"


def test_distance_y_with_single_image_fid(tiny, traj):
    sim = SingleImageFID()
    outcome = Outcome(tiny, traj, 2, "next_latent", image_domain=True)
    curves = play_games(outcome, sim, {"m": torch.rand(8, 8)}, n_points=5, y="distance")["m"]
    assert curves["deletion"].y[0] == pytest.approx(0, abs=1e-3) and curves["deletion"].y[-1] > 1e-3
    assert np.all(curves["insertion"].y >= 0) and curves["insertion"].y[-1] == pytest.approx(0, abs=1e-3)


@pytest.mark.parametrize("kwargs, key", [
    ({"games": ["swap"]}, "games"), ({"substrate": "noise"}, "substrate"), ({"y": "distance"}, "y"),
    ({"y": "rank"}, "y"), ({"batch_size": 0}, "batch_size"), ({"n_points": 1}, "n_points"),
    ({"maps": {"m": torch.rand(4, 4)}}, "maps")])
def test_bad_arguments_raise_user_errors(kwargs, key):
    args = {"maps": {"m": torch.rand(8, 8)}, **kwargs}
    with pytest.raises(UserError, match=key):
        play_games(ToyOutcome(torch.randn(4, 8, 8)), Cosine(), **args)
