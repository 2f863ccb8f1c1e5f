"""``model.dtype``: the networks run in it, everything scored stays float32, and explanations survive bfloat16.

bfloat16 is the reduced precision a CPU runs (float16 is the GPU default of the SD configs); the Shapes model runs
about 10x slower in it on a CPU than in float32, so the maps here are small.
"""

import pytest
import torch
from conftest import ROOT
from scipy.stats import spearmanr

from diffexplain.explainers import DFCAM, RISE
from diffexplain.models import DiffusionModel, tiny_model
from diffexplain.models.outcomes import Outcome
from diffexplain.schedules import Uniform
from diffexplain.similarity import Cosine

PROMPT = "a red circle and a blue square"
STEP = 1


@pytest.fixture(scope="module")
def models(shapes):
    """The session's float32 Shapes model and the same loaded in bfloat16."""
    return shapes, DiffusionModel.from_pretrained(str(ROOT / "models" / "shapes-sd"), dtype="bfloat16",
                                                  scheduler="dpm_solver", guidance_scale=5.0)


@pytest.fixture(scope="module")
def trajectory(models):
    return models[0].generate(PROMPT, 0, Uniform(4))


def test_networks_run_in_the_model_dtype_and_the_trajectory_in_float32(models, trajectory):
    f32, bf16 = models
    pipe = bf16.pipe
    assert bf16.dtype == pipe.unet.dtype == pipe.vae.dtype == pipe.text_encoder.dtype == torch.bfloat16
    traj = bf16.generate(PROMPT, 0, Uniform(4))
    for name in ("latents", "outputs", "eps", "x0"):
        assert getattr(traj, name).dtype == torch.float32, name
    assert traj.cond.embeds.dtype == torch.bfloat16
    image = bf16.decode(traj.latents[-1:])
    assert image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    # the same sampler in bfloat16 ends close to float32's final latent, yet not bit-identical (bf16 really ran)
    a, b = trajectory.latents[-1].flatten(), traj.latents[-1].flatten()
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.99 and not torch.equal(a, b)


def test_rise_in_bfloat16_matches_float32(models, trajectory):
    """DF-RISE on one trajectory: the maps and, stricter, the per-mask scores the maps are built from agree."""
    f32, bf16 = models
    sim = Cosine()
    maps = [RISE(m, sim, n_masks=16, batch_size=16, steps=[STEP]).explain(trajectory)[0] for m in models]
    assert maps[1].dtype == torch.float32
    assert spearmanr(maps[0].flatten(), maps[1].flatten())[0] >= 0.95
    masks = RISE(f32, sim).sample_masks(16, *trajectory.latents.shape[-2:], torch.Generator().manual_seed(0))
    z = trajectory.latents[STEP: STEP + 1]
    scores = []
    for m in models:
        outcome = Outcome(m, trajectory, STEP)
        with torch.no_grad():
            scores.append(sim(outcome(z * masks), outcome.reference()))
    assert scores[0].std() > 0.02  # the masks matter, so rank agreement is informative
    assert spearmanr(scores[0], scores[1])[0] >= 0.95


def test_cam_in_bfloat16_matches_float32(models, trajectory):
    maps = [DFCAM(m, steps=[STEP]).explain(trajectory)[0] for m in models]
    assert maps[1].dtype == torch.float32 and maps[0].std() > 0
    assert spearmanr(maps[0].flatten(), maps[1].flatten())[0] >= 0.95


def test_tiny_model_takes_a_dtype():
    model = tiny_model(dtype="bfloat16")
    assert {p.dtype for p in model.pipe.unet.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.pipe.text_encoder.parameters()} == {torch.bfloat16}
    assert model.generate(PROMPT, 0, Uniform(2)).latents.dtype == torch.float32


def test_sdxl_vae_stays_float32_in_float16_as_diffusers_does():
    """SDXL's VAE overflows in float16 (its config says force_upcast); SD's VAE follows model.dtype."""
    sdxl = tiny_model(variant="sdxl", dtype="float16")
    assert sdxl.dtype == sdxl.pipe.text_encoder_2.dtype == torch.float16 and sdxl.pipe.vae.dtype == torch.float32
    traj = sdxl.generate(PROMPT, 0, Uniform(2))
    assert torch.isfinite(traj.latents).all() and sdxl.decode(traj.latents[-1:]).dtype == torch.float32
    assert tiny_model(variant="sd", dtype="float16").pipe.vae.dtype == torch.float16
