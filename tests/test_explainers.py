"""Every explainer on one table (like Captum's): the contract each must keep, on the tiny and the shapes model."""

from pathlib import Path

import pytest
import torch
from conftest import ROOT
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from diffexplain.explainers import (
    DFCAM,
    RISE,
    AttentionRelevanceExplainer,
    CrossAttentionExplainer,
    GradientShapExplainer,
    IntegratedGradientsExplainer,
    LimeExplainer,
    OcclusionExplainer,
    RandomExplainer,
)
from diffexplain.schedules import Uniform
from diffexplain.similarity import SSIM

PROMPT = "a red circle and a blue square"
EXPLAINERS = {  # small settings: the contract, not the quality
    "rise": lambda m, s, seed: RISE(m, s, n_masks=8, batch_size=4, seed=seed),
    "cam": lambda m, s, seed: DFCAM(m, seed=seed),
    "cross_attention": lambda m, s, seed: CrossAttentionExplainer(m, seed=seed),
    "attention_relevance": lambda m, s, seed: AttentionRelevanceExplainer(m, seed=seed),
    "integrated_gradients": lambda m, s, seed: IntegratedGradientsExplainer(m, s, n_steps=3, seed=seed),
    "gradient_shap": lambda m, s, seed: GradientShapExplainer(m, s, n_samples=3, seed=seed),
    "occlusion": lambda m, s, seed: OcclusionExplainer(m, s, window=4, stride=4, seed=seed),
    "lime": lambda m, s, seed: LimeExplainer(m, s, n_samples=8, seed=seed),
    "random": lambda m, s, seed: RandomExplainer(m, s, seed=seed),
}
STOCHASTIC = {"rise", "gradient_shap", "lime", "random"}


@pytest.fixture(scope="module", params=["tiny", "shapes"])
def setup(request, tiny):
    model = tiny if request.param == "tiny" else request.getfixturevalue("shapes")
    return model, model.generate(PROMPT, 0, Uniform(3))


def state(unet) -> tuple:
    """Everything an explainer could leave behind on the UNet: hooks and attention processors."""
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in unet.modules())
    return hooks, tuple((k, type(v).__name__, id(v)) for k, v in unet.attn_processors.items())


@pytest.mark.parametrize("name", EXPLAINERS)
def test_explainer_contract(setup, name):
    model, traj = setup
    before = state(model.denoiser)
    ex = EXPLAINERS[name](model, SSIM(), 0)
    maps = ex.explain(traj, [0, 2])
    c, h, w = model.latent_shape
    expected = (2, len(ex.words(traj)), h, w) if ex.per_token else (2, h, w)
    assert ex.name == name and maps.shape == expected
    assert torch.isfinite(maps).all() and maps.abs().sum() > 0
    assert torch.equal(maps, EXPLAINERS[name](model, SSIM(), 0).explain(traj, [0, 2])), "not deterministic"
    if name in STOCHASTIC:
        assert not torch.equal(maps, EXPLAINERS[name](model, SSIM(), 1).explain(traj, [0, 2])), "seed ignored"
    assert state(model.denoiser) == before, "hooks or attention processors left behind"
    assert all(p.grad is None for p in model.denoiser.parameters())


@pytest.mark.parametrize("name", EXPLAINERS)
def test_every_explainer_config_instantiates_through_hydra(tiny, name):
    with initialize_config_dir(config_dir=str(Path(ROOT) / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["pipeline=explain", "model=tiny", f"explainer={name}"])
    ex = instantiate(cfg.explainer)(model=tiny, similarity=instantiate(cfg.similarity))
    assert ex.name == name and ex.steps is None
