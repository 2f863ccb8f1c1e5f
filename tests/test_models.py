import pytest
import torch

from diffexplain.errors import UserError
from diffexplain.models import DiffusionModel, load_pipeline
from diffexplain.models.tiny import build_tiny_pipeline
from diffexplain.schedules import Uniform

PROMPT = "a red circle and a blue square"


def test_save_pretrained_roundtrip_through_load_pipeline(tmp_path, tiny):
    build_tiny_pipeline(seed=0).save_pretrained(tmp_path / "tiny")
    loaded = DiffusionModel(load_pipeline(str(tmp_path / "tiny")))
    a = tiny.generate(PROMPT, 3, Uniform(4))
    b = loaded.generate(PROMPT, 3, Uniform(4))
    assert torch.equal(a.latents, b.latents)
    assert a.timesteps.tolist() == b.timesteps.tolist()


def test_generate_is_bitwise_deterministic_and_seed_dependent(tiny):
    a = tiny.generate(PROMPT, 0, Uniform(6))
    b = tiny.generate(PROMPT, 0, Uniform(6))
    c = tiny.generate(PROMPT, 1, Uniform(6))
    for name in ("latents", "outputs", "eps", "x0", "noise_seeds", "input_scales", "alpha_bars", "stages"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.latents, c.latents)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_trajectory_records_every_step(prediction_type):
    pipe = build_tiny_pipeline(seed=0)
    pipe.scheduler.register_to_config(prediction_type=prediction_type)
    model = DiffusionModel(pipe, scheduler="dpm_solver")
    tr = model.generate(PROMPT, 0, Uniform(5))
    c, h, w = model.latent_shape
    assert tr.num_steps == 5 and tr.latents.shape == (6, c, h, w)
    assert tr.eps.shape == tr.x0.shape == (5, c, h, w)
    assert tr.timesteps.tolist() == sorted(tr.timesteps.tolist(), reverse=True)
    # x0 and eps are consistent with z_t: z = sqrt(a) x0 + sqrt(1 - a) eps
    for i, t in enumerate(tr.timesteps):
        a = model.scheduler.alphas_cumprod[int(t)]
        assert torch.allclose(a.sqrt() * tr.x0[i] + (1 - a).sqrt() * tr.eps[i], tr.latents[i], atol=1e-4)


def test_trajectory_of_the_shipped_model_is_the_pipelines_sample(shapes):
    """model=shapes (v-prediction, DPM-Solver, guidance): generate() ends where StableDiffusionPipeline does."""
    model = shapes
    tr = model.generate(PROMPT, 3, Uniform(8))
    out = model.pipe(PROMPT, latents=model.initial_latents(3), num_inference_steps=8, guidance_scale=5.0,
                     output_type="latent").images
    assert torch.allclose(tr.latents[-1], out[0], atol=1e-4)


def test_batched_guided_step_reproduces_trajectory(tiny):
    tr = tiny.generate(PROMPT, 0, Uniform(5))
    i = 2
    z = tr.latents[i : i + 1].repeat(3, 1, 1, 1)
    with torch.no_grad():
        out = tiny.unet_output(z, tr.timesteps[i], tr.cond)
        nxt = tiny.step(tr, i, out, z)
    assert torch.allclose(nxt, tr.latents[i + 1].expand_as(nxt), atol=1e-5)
    eps, _ = tiny.eps_and_x0(out, z, tr.timesteps[i])
    assert torch.allclose(eps[0], tr.eps[i], atol=1e-5)


def test_guidance_combines_both_halves(tiny):
    tr = tiny.generate(PROMPT, 0, Uniform(3))
    z, t = tr.latents[:1], tr.timesteps[0]
    with torch.no_grad():
        g0 = DiffusionModel(tiny.pipe, guidance_scale=0.0).unet_output(z, t, tr.cond)
        g1 = DiffusionModel(tiny.pipe, guidance_scale=1.0).unet_output(z, t, tr.cond)
        g3 = DiffusionModel(tiny.pipe, guidance_scale=3.0).unet_output(z, t, tr.cond)
    assert torch.allclose(g3, g0 + 3 * (g1 - g0), atol=1e-5)
    assert not torch.allclose(g0, g1)


def test_decode_gives_images_in_unit_range(tiny):
    tr = tiny.generate(PROMPT, 0, Uniform(2))
    img = tiny.decode(tr.latents[-1:])
    assert img.shape == (1, 3, tiny.resolution, tiny.resolution)
    assert img.min() >= 0 and img.max() <= 1


def test_bad_model_inputs_raise_user_errors(tmp_path, tiny):
    with pytest.raises(UserError, match="model.path"):
        load_pipeline(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="model.dtype"):
        load_pipeline(str(tmp_path), dtype="float8")
    with pytest.raises(UserError, match="model.scheduler"):
        DiffusionModel(build_tiny_pipeline(), scheduler="euler")
    tr = tiny.generate(PROMPT, 0, Uniform(4))
    with pytest.raises(UserError, match="explainer.steps"):
        tr.check_steps([4])
    assert tr.check_steps([-1, 0]) == [3, 0]
