import dataclasses

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients

from diffexplain.errors import UserError
from diffexplain.explainers import (
    GradientShapExplainer,
    IntegratedGradientsExplainer,
    LimeExplainer,
    OcclusionExplainer,
    StepOutcome,
)
from diffexplain.metrics.substrates import blur
from diffexplain.models import DiffusionModel
from diffexplain.schedules import Uniform
from diffexplain.similarity import SSIM, Cosine, SingleImageFID

PROMPT = "a red circle and a blue square"

# (class, small config, stochastic for a fixed baseline)
METHODS = {
    "integrated_gradients": (IntegratedGradientsExplainer, {"n_steps": 8}, False),
    "gradient_shap": (GradientShapExplainer, {"n_samples": 6, "stdevs": 0.1, "internal_batch_size": 4}, True),
    "occlusion": (OcclusionExplainer, {"window": 3, "stride": 2}, False),
    "lime": (LimeExplainer, {"n_samples": 48, "internal_batch_size": 16}, True),
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def traj(tiny):
    return tiny.generate(PROMPT, 0, Uniform(4))


def make(model, name, **kwargs):
    cls, config, _ = METHODS[name]
    return cls(model, kwargs.pop("similarity", SSIM()), **{**config, **kwargs})


def region_model(tiny, region):
    """The tiny pipeline whose step outcome is ``z ⊙ region``: the UNet output is z ⊙ region and the
    scheduler step returns the output, so the outcome depends on the latent inside ``region`` only."""
    model = DiffusionModel(tiny.pipe)
    model.unet_output = lambda latents, t, cond: latents * region
    model.step = lambda trajectory, i, output, latents: output
    return model


def hook_count(model) -> int:
    modules = [*model.denoiser.modules(), *model.pipe.vae.modules(), *model.pipe.text_encoder.modules()]
    per_module = sum(len(d) for m in modules for d in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks,
                                                       m._backward_pre_hooks))
    per_param = sum(len(p._backward_hooks or {}) for m in modules for p in m.parameters(recurse=False))
    g = torch.nn.modules.module
    return per_module + per_param + sum(len(d) for d in (g._global_forward_hooks, g._global_forward_pre_hooks,
                                                         g._global_backward_hooks, g._global_backward_pre_hooks))


@pytest.mark.parametrize("name", list(METHODS))
def test_maps_are_deterministic_finite_latent_grids_and_leave_no_trace(tiny, traj, name):
    """Same seed, same map; another seed, another map. No hooks, parameter gradients or global RNG draws remain."""
    baseline = "zeros" if METHODS[name][2] else "noise"  # the others are stochastic through the baseline only
    params = [*tiny.denoiser.parameters(), *tiny.pipe.vae.parameters(), *tiny.pipe.text_encoder.parameters()]
    requires, hooks = [p.requires_grad for p in params], hook_count(tiny)
    torch.manual_seed(123)
    np.random.seed(123)
    a = make(tiny, name, baseline=baseline, seed=1).explain(traj, [1])
    after = torch.rand(3), np.random.rand(3)
    b = make(tiny, name, baseline=baseline, seed=1).explain(traj, [1])
    assert a.shape == (1, 8, 8) and a.dtype == torch.float32 and torch.isfinite(a).all() and a.abs().sum() > 0
    assert torch.equal(a, b)
    assert not torch.equal(a, make(tiny, name, baseline=baseline, seed=2).explain(traj, [1]))
    torch.manual_seed(123)
    np.random.seed(123)
    assert torch.equal(after[0], torch.rand(3)) and np.array_equal(after[1], np.random.rand(3))
    assert hook_count(tiny) == hooks
    assert all(p.grad is None for p in params) and [p.requires_grad for p in params] == requires
    assert torch.is_grad_enabled()


def test_the_hook_count_sees_hooks(tiny):
    before = hook_count(tiny)
    handles = [tiny.denoiser.conv_in.register_forward_hook(lambda *args: None),
               torch.nn.modules.module.register_module_full_backward_hook(lambda *args: None)]
    assert hook_count(tiny) == before + 2
    for h in handles:
        h.remove()
    assert hook_count(tiny) == before


@pytest.mark.parametrize("target", ["next_latent", "x0"])
@pytest.mark.parametrize("similarity", [SSIM(), Cosine(), SingleImageFID()], ids=lambda s: s.name)
def test_the_unperturbed_latent_scores_the_maximum_similarity(tiny, traj, target, similarity):
    f = StepOutcome(tiny, traj, 2, similarity, target)
    with torch.no_grad():
        scores = f(torch.cat([traj.latents[2:3], torch.zeros_like(traj.latents[2:3])]))
    assert scores.shape == (2,)
    assert scores[0].item() == pytest.approx(1.0, abs=1e-3)
    assert scores[1] < scores[0]


@pytest.mark.parametrize("baseline", ["zeros", "blur"])
@pytest.mark.parametrize("target", ["output", "next_latent"])
def test_integrated_gradients_are_complete(tiny, traj, baseline, target):
    """Σ attributions ≈ f(z) − f(baseline): Captum's convergence delta is small next to that difference."""
    ex = IntegratedGradientsExplainer(tiny, SSIM(), target=target, n_steps=64, baseline=baseline,
                                      internal_batch_size=64)
    z = traj.latents[1:2]
    f = ex.outcome(traj, 1)
    start = ex.baselines(z, ex.generator(traj, 1))
    delta = IntegratedGradients(f).compute_convergence_delta(ex.attributions(traj, 1), start, z)
    with torch.no_grad():
        difference = (f(z) - f(start)).abs().item()
    assert difference > 0.1
    assert delta.abs().item() < 0.05 * difference


@pytest.mark.parametrize("name", ["integrated_gradients", "gradient_shap", "occlusion", "lime"])
def test_map_highlights_the_region_the_outcome_depends_on(tiny, traj, name):
    region = torch.zeros(1, 1, 8, 8)
    region[..., 2:5, 3:7] = 1
    fake = dataclasses.replace(traj, latents=traj.latents.clone())
    fake.latents[2] = traj.latents[1] * region[0]  # the unperturbed outcome
    extra = {"window": 1, "stride": 1} if name == "occlusion" else {"n_samples": 64} if name == "lime" else {}
    sal = make(region_model(tiny, region), name, channel_reduce="abs_sum", **extra).explain(fake, [1])[0]
    inside, outside = sal[region[0, 0] > 0], sal[region[0, 0] == 0]
    assert inside.sum() > 0
    if name == "lime":  # superpixels straddle the region's border
        assert inside.mean() > 2 * outside.mean()
    else:
        assert inside.mean() > outside.max()
        assert outside.sum() == 0


@pytest.mark.parametrize("target, similarity", [("x0", SSIM()), ("next_latent", SingleImageFID())],
                         ids=["x0-ssim", "next_latent-fid"])
def test_image_comparisons_and_abs_sum_reduction(tiny, traj, target, similarity):
    ex = make(tiny, "integrated_gradients", similarity=similarity, target=target, channel_reduce="abs_sum", n_steps=4)
    sal = ex.explain(traj, [2])
    assert sal.shape == (1, 8, 8) and torch.isfinite(sal).all() and (sal >= 0).all() and sal.sum() > 0
    assert torch.allclose(sal[0], ex.attributions(traj, 2)[0].abs().sum(0))


def test_blur_baseline_keeps_shape_and_mean_and_handles_small_grids():
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    b = blur(z)
    assert b.shape == z.shape and b.std() < z.std()
    assert torch.allclose(blur(torch.full((1, 2, 3, 5), 2.0)), torch.full((1, 2, 3, 5), 2.0))


@pytest.mark.parametrize("superpixels, kwargs", [("quickshift", {}), ("slic", {"n_segments": 32})])
def test_lime_superpixels_are_relabelled_on_the_latent_grid(tiny, traj, superpixels, kwargs):
    mask = LimeExplainer(tiny, SSIM(), superpixels=superpixels, superpixel_kwargs=kwargs).feature_mask(traj, 1)
    assert mask.shape == (1, 1, 8, 8) and mask.dtype == torch.int64
    labels = mask.unique()
    assert len(labels) > 1 and torch.equal(labels, torch.arange(len(labels)))


@pytest.mark.parametrize("cls, kwargs, key", [
    (IntegratedGradientsExplainer, {"n_steps": 0}, "explainer.n_steps"),
    (IntegratedGradientsExplainer, {"method": "simpson"}, "explainer.method"),
    (IntegratedGradientsExplainer, {"target": "final"}, "explainer.target"),
    (IntegratedGradientsExplainer, {"baseline": "mean"}, "explainer.baseline"),
    (IntegratedGradientsExplainer, {"channel_reduce": "max"}, "explainer.channel_reduce"),
    (IntegratedGradientsExplainer, {"internal_batch_size": 0}, "explainer.internal_batch_size"),
    (GradientShapExplainer, {"n_samples": 0}, "explainer.n_samples"),
    (GradientShapExplainer, {"stdevs": -1.0}, "explainer.stdevs"),
    (OcclusionExplainer, {"window": 9}, "explainer.window"),
    (OcclusionExplainer, {"stride": 0}, "explainer.stride"),
    (LimeExplainer, {"n_samples": 1}, "explainer.n_samples"),
    (LimeExplainer, {"superpixels": "watershed"}, "explainer.superpixels"),
    (LimeExplainer, {"superpixel_kwargs": {"bogus": 1}}, "explainer.superpixel_kwargs"),
    (LimeExplainer, {"alpha": 0}, "explainer.alpha"),
])
def test_invalid_parameters_raise_user_errors(tiny, cls, kwargs, key):
    with pytest.raises(UserError, match=key):
        cls(tiny, SSIM(), **kwargs)
