"""Tiny SDXL (two text encoders, added time ids, Euler) and SD 2 (v-prediction) pipelines, saved and loaded as users
load hub models: the adapter's conditioning and sampler match diffusers' own pipelines, and explainers run."""

import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from diffexplain.explainers import DFCAM, RISE, CrossAttentionExplainer
from diffexplain.models import DiffusionModel
from diffexplain.models.diffusion import batched_state
from diffexplain.schedules import Uniform
from diffexplain.similarity import SSIM

PROMPT = "a red circle and a blue square"


@pytest.fixture(scope="module", params=["sdxl", "sd2"])
def loaded(request, tiny_pipeline_dirs):
    model = DiffusionModel.from_pretrained(str(tiny_pipeline_dirs[request.param]), guidance_scale=5.0)
    return request.param, model, model.generate(PROMPT, 3, Uniform(3))


def test_loaded_pipeline_kinds(loaded):
    variant, model, _ = loaded
    if variant == "sdxl":
        assert isinstance(model.pipe, StableDiffusionXLPipeline) and model.pipe.text_encoder_2 is not None
        assert type(model.scheduler).__name__ == "EulerDiscreteScheduler"
    else:
        assert isinstance(model.pipe, StableDiffusionPipeline)
        assert model.scheduler.config.prediction_type == "v_prediction"


def test_generate_matches_the_diffusers_pipeline(loaded):
    """Same z_T, steps and guidance: the adapter's encode (negative half, SDXL's pooled embeds and time ids) and
    sampler end where the pipeline's own __call__ does."""
    _, model, traj = loaded
    noise = model.initial_latents(3) / float(model.scheduler.init_noise_sigma)  # the pipeline scales it itself
    out = model.pipe(PROMPT, latents=noise, num_inference_steps=3, guidance_scale=model.guidance_scale,
                     height=model.resolution, width=model.resolution, output_type="latent").images
    assert torch.allclose(traj.latents[-1], out[0], atol=1e-4, rtol=1e-4)


def test_sdxl_conditioning_carries_pooled_embeds_and_time_ids(loaded):
    variant, model, traj = loaded
    if variant != "sdxl":
        assert traj.cond.added == {}
        return
    side = model.resolution
    added = traj.cond.added
    assert added["time_ids"].tolist() == [[side, side, 0, 0, side, side]] * 2
    assert added["text_embeds"].shape == (2, model.pipe.text_encoder_2.config.projection_dim)
    assert traj.cond.embeds.shape[-1] == model.denoiser.config.cross_attention_dim  # both encoders, concatenated
    # an empty negative prompt is SDXL's zeros (force_zeros_for_empty_prompt), a given one is encoded
    assert not traj.cond.embeds[0].any() and not added["text_embeds"][0].any() and traj.cond.embeds[1].any()
    negative = model.encode(PROMPT, negative_prompt="a green triangle")
    assert negative.embeds[0].any() and negative.added["text_embeds"][0].any()


def test_eps_and_x0_follow_the_prediction_type(loaded):
    """c·z = √ᾱ·x0 + √(1−ᾱ)·ε per row, and x0 is the scheduler's own pred_original_sample (v-prediction for SD 2,
    sigma-space latents for SDXL's Euler)."""
    _, model, traj = loaded
    for i in range(traj.num_steps):
        c, a = traj.input_scales[i], traj.alpha_bars[i]
        assert torch.allclose(c * traj.latents[i], a.sqrt() * traj.x0[i] + (1 - a).sqrt() * traj.eps[i], atol=1e-4)
        res = batched_state(traj.scheduler_states[i], 1).step(traj.outputs[i: i + 1], traj.timesteps[i],
                                                              traj.latents[i: i + 1], generator=torch.Generator())
        assert torch.allclose(res.pred_original_sample[0], traj.x0[i], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("make", [
    lambda m: RISE(m, SSIM(), n_masks=8, batch_size=8),
    lambda m: DFCAM(m),
    lambda m: CrossAttentionExplainer(m),
], ids=["rise", "cam", "cross_attention"])
def test_explainers_run(loaded, make):
    _, model, traj = loaded
    explainer = make(model)
    maps = explainer.explain(traj, [0, traj.num_steps - 1])
    _, h, w = model.latent_shape
    words = len(PROMPT.split())
    assert maps.shape == ((2, words, h, w) if explainer.per_token else (2, h, w))
    assert maps.dtype == torch.float32 and torch.isfinite(maps).all() and maps.std() > 0
    if explainer.per_token:  # attention probabilities: each word's share lies in [0, 1]
        assert maps.min() >= 0 and maps.max() <= 1


@pytest.mark.parametrize("variant, config", [("sdxl", "sdxl"), ("sd2", "sd21")])
def test_the_default_evaluate_job_runs_on_a_local_pipeline_dir(variant, config, tiny_pipeline_dirs, tmp_path):
    """``python run.py model=sdxl model.path=<local dir>``: the users' command, on the tiny SDXL / SD 2 pipelines."""
    from conftest import run_job

    from diffexplain.io import load_run

    out = tmp_path / variant
    run_job(f"model={config}", f"model.path={tiny_pipeline_dirs[variant]}", "model.dtype=float32",
            "model.scheduler=null", "model.resolution=null", "logger=none", "schedule.num_steps=3", "explainer=cam",
            "explainer.steps=[2]", "data.prompts=[a red circle and a blue square]", out_dir=out)
    df = load_run(out).results
    aucs = df[df.metric.isin(["deletion_auc", "insertion_auc"])]
    assert set(aucs.explainer) == {"cam", "random", "magnitude", "edges", "randomised"}
    assert aucs.value.between(-1, 1).all()
