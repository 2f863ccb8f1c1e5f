import dataclasses

import pytest
import torch

from diffexplain.errors import UserError
from diffexplain.explainers import RISE
from diffexplain.models import DiffusionModel
from diffexplain.schedules import Uniform
from diffexplain.similarity import SSIM, Cosine, SingleImageFID, Structure

PROMPT = "a red circle and a blue square"


@pytest.fixture(scope="module")
def traj(tiny):
    return tiny.generate(PROMPT, 0, Uniform(4))


class ConstantSimilarity(Cosine):
    def forward(self, a, b):
        return torch.ones(a.shape[0], dtype=a.dtype)


def region_model(tiny, region):
    """The tiny pipeline with a UNet replaced by one whose output depends on the latent inside ``region`` only."""
    model = DiffusionModel(tiny.pipe)
    model.unet_output = lambda latents, t, cond: latents * region
    return model


def test_normalisation_makes_a_constant_score_a_flat_map_of_one(tiny, traj):
    model = region_model(tiny, torch.ones(1, 1, 8, 8))
    rise = RISE(model, ConstantSimilarity(), n_masks=8000, p=0.3, batch_size=1000, estimator="rise")
    sal = rise.explain(traj, [1])[0]
    assert sal.mean().item() == pytest.approx(1.0, abs=0.01)
    assert sal.std().item() < 0.05


def test_map_highlights_the_region_the_outcome_depends_on(tiny, traj):
    """A model whose output at step i only depends on a known region: that region is what the map highlights."""
    region = torch.zeros(1, 1, 8, 8)
    region[..., 2:5, 3:7] = 1
    model = region_model(tiny, region)
    fake = dataclasses.replace(traj, latents=traj.latents.clone())
    fake.latents[2] = traj.latents[1] * region[0]  # the unmasked outcome: what the masked ones are scored against
    sal = RISE(model, Cosine(), target="paper", n_masks=8000, batch_size=1000).explain(fake, [1])[0]
    inside, outside = sal[region[0, 0] > 0], sal[region[0, 0] == 0]
    assert inside.mean() > outside.max()
    top = sal.flatten().topk(len(inside)).indices
    assert region.flatten()[top].mean() >= 0.75, "the most salient pixels lie in the region"


@pytest.mark.parametrize("target", ["paper", "next_latent", "x0", "final"])
@pytest.mark.parametrize("masks", ["pixel", "grid"])
def test_every_target_and_mask_kind_gives_finite_deterministic_maps(tiny, traj, target, masks):
    make = lambda: RISE(tiny, SSIM(), masks=masks, target=target, n_masks=16, batch_size=8, seed=1)
    a, b = make().explain(traj, [0, 3]), make().explain(traj, [0, 3])
    assert a.shape == (2, 8, 8) and torch.isfinite(a).all()
    assert torch.equal(a, b)
    assert not torch.equal(a, RISE(tiny, SSIM(), masks=masks, target=target, n_masks=16, seed=2).explain(traj, [0, 3]))


def test_streamed_accumulation_does_not_depend_on_batch_size(tiny, traj):
    a = RISE(tiny, SSIM(), n_masks=40, batch_size=7).explain(traj, [2])
    b = RISE(tiny, SSIM(), n_masks=40, batch_size=40).explain(traj, [2])
    assert torch.allclose(a, b, atol=1e-5)


def test_map_scores_and_image_similarities(tiny, traj):
    assert RISE(tiny, Structure(), score="map", n_masks=8).explain(traj, [-1]).shape == (1, 8, 8)
    assert torch.isfinite(RISE(tiny, SingleImageFID(), n_masks=8).explain(traj, [0])).all()


def test_grid_masks_are_in_unit_range_with_mean_p(tiny):
    ex = RISE(tiny, SSIM(), masks="grid", grid_size=3, p=0.5)
    m = ex.sample_masks(2000, 8, 8, torch.Generator().manual_seed(0))
    assert m.shape == (2000, 1, 8, 8) and m.min() >= 0 and m.max() <= 1
    assert m.mean().item() == pytest.approx(0.5, abs=0.02)
    assert ((m > 0) & (m < 1)).any(), "grid masks are smooth (bilinear)"


@pytest.mark.parametrize("kwargs, key", [({"n_masks": 0}, "explainer.n_masks"), ({"p": 1.5}, "explainer.p"),
                                         ({"target": "noise"}, "explainer.target"),
                                         ({"masks": "x"}, "explainer.masks")])
def test_invalid_parameters_raise_user_errors(tiny, kwargs, key):
    with pytest.raises(UserError, match=key):
        RISE(tiny, SSIM(), **kwargs)
    with pytest.raises(UserError, match="explainer.score"):
        RISE(tiny, SingleImageFID(), score="map")


# the command line's refusals of bad explainer.* values: test_refusals.py (pipeline=explain cases)


def test_centring_removes_the_mean_score_times_the_mask_counts(tiny, traj):
    """estimator=centred: Σ (S_k − S̄) M_k / (N p) = the RISE map minus S̄ · Σ M_k / (N p); a constant score gives 0."""
    plain = RISE(tiny, SSIM(), n_masks=24, batch_size=10, seed=3, estimator="rise")
    centred = RISE(tiny, SSIM(), n_masks=24, batch_size=10, seed=3, estimator="centred")
    g, (h, w) = plain.generator(traj, 2), traj.latents.shape[-2:]
    masks = torch.cat([plain.sample_masks(n, h, w, g) for n in (10, 10, 4)])
    outcome = plain.outcome(traj, 2)
    with torch.no_grad():
        scores = plain.scores(outcome(traj.latents[2:3] * masks).float(), outcome.reference().float(), masks)
    expected = plain.explain(traj, [2])[0] - scores.mean() * masks.sum(dim=(0, 1)) / (24 * 0.5)
    assert torch.allclose(centred.explain(traj, [2])[0], expected, atol=1e-5)
    model = region_model(tiny, torch.ones(1, 1, 8, 8))
    flat = RISE(model, ConstantSimilarity(), n_masks=64, estimator="centred").explain(traj, [1])[0]
    assert flat.abs().max() < 1e-6


class Coverage(Cosine):
    """On an all-ones latent and an identity model, the mean of the masked outcome: the mask's coverage itself."""

    def forward(self, a, b):
        return a.flatten(1).mean(1)


@pytest.mark.parametrize("masks", ["pixel", "grid"])
def test_the_coverage_estimator_removes_a_score_that_only_counts_the_kept_pixels(tiny, traj, masks):
    model = region_model(tiny, torch.ones(1, 1, 8, 8))
    ones = dataclasses.replace(traj, latents=torch.ones_like(traj.latents))
    make = lambda estimator: RISE(model, Coverage(), target="output", masks=masks, n_masks=64,
                                  estimator=estimator).explain(ones, [1])[0]
    assert make("coverage").abs().max() < 1e-5
    assert make("centred").abs().max() > 1e-3, "centring alone keeps the coverage's sampling noise"
