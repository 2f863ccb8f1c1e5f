"""Every offered scheduler on the tiny model: generation is reproducible, the trajectory replays exactly (stochastic
schedulers included, through the recorded step noise), sigma-space latents give the scheduler's own x0."""

import copy

import pytest
import torch

from diffexplain.errors import UserError
from diffexplain.models import DiffusionModel
from diffexplain.models.diffusion import batched_state
from diffexplain.models.outcomes import Outcome
from diffexplain.models.schedulers import CLASS_NAMES, SHORT_NAMES, step_parameters
from diffexplain.models.tiny import build_tiny_pipeline
from diffexplain.schedules import Custom, Uniform, schedulers_accepting_timesteps

PROMPT = "a red circle"
STEPS = {"PNDMScheduler": 4}  # its Runge-Kutta warm-up (the tiny config does not skip it) needs >= 4 steps; else 3
STOCHASTIC = {"DDPMScheduler", "EulerAncestralDiscreteScheduler", "KDPM2AncestralDiscreteScheduler", "ddim-eta",
              "dpm-sde", "dpm-single-sde"}
VARIANTS = {  # id → (scheduler, scheduler_config, eta)
    **{name: (name, {}, 0.0) for name in CLASS_NAMES},
    "ddim-eta": ("DDIMScheduler", {}, 0.5),
    "dpm-sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}, 0.0),
    "dpm-single-sde": ("DPMSolverSinglestepScheduler", {"algorithm_type": "sde-dpmsolver++"}, 0.0),
}


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_pipeline(seed=0)


def model_for(pipe, case: str, prediction_type: str = "epsilon") -> DiffusionModel:
    """The tiny pipeline with scheduler ``case``, built from its original DDIM config (SD 1.x's betas)."""
    pipe = copy.copy(pipe)
    pipe.scheduler = _ddim(prediction_type)
    name, config, eta = VARIANTS[case]
    return DiffusionModel(pipe, scheduler=name, scheduler_config=config, eta=eta)


def _ddim(prediction_type: str):
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)


@pytest.mark.parametrize("case", VARIANTS)
def test_trajectory_replays_exactly(pipe, case):
    model = model_for(pipe, case)
    a, b = (model.generate(PROMPT, 0, Uniform(STEPS.get(case, 3))) for _ in range(2))
    assert torch.equal(a.latents, b.latents) and torch.equal(a.outputs, b.outputs)
    assert a.num_steps == len(model.scheduler.timesteps) and a.stages.tolist().count(0) >= 3
    assert a.latents.dtype == a.outputs.dtype == torch.float32
    noisy_rows = []
    for i in range(a.num_steps):
        z, out = a.latents[i: i + 1], a.outputs[i: i + 1]
        assert torch.equal(model.step(a, i, out, z)[0], a.latents[i + 1]), f"step {i}"
        assert torch.equal(Outcome(model, a, i, "next_latent")(z)[0], a.latents[i + 1]), f"outcome {i}"
        other = model._step(batched_state(a.scheduler_states[i], 1), a.timesteps[i], a.noise_seeds[i] + 1, out, z)
        if not torch.equal(other[0], a.latents[i + 1]):
            noisy_rows.append(i)
    # another noise seed changes some z_{t-1} exactly when the scheduler is stochastic: replay is what matters there
    assert bool(noisy_rows) == (case in STOCHASTIC)
    # a batch replays the same noise on every row: the stochastic part cancels between perturbed and unperturbed z
    i = noisy_rows[0] if noisy_rows else a.num_steps // 2
    with torch.no_grad():  # (rows of a batched UNet call differ from a single call by float rounding only)
        batch = Outcome(model, a, i, "next_latent")(a.latents[i: i + 1].repeat(3, 1, 1, 1))
    assert torch.allclose(batch, a.latents[i + 1].expand_as(batch), rtol=1e-4, atol=1e-3)
    with torch.no_grad():
        assert torch.equal(model.rollout(a, a.num_steps - 2, a.latents[-3:-2])[0], a.latents[-1])


SIGMA_SPACE = ["EulerDiscreteScheduler", "HeunDiscreteScheduler", "LMSDiscreteScheduler", "KDPM2DiscreteScheduler"]


@pytest.mark.parametrize("case, prediction_type", [(c, "epsilon") for c in VARIANTS if c not in STOCHASTIC]
                         + [(c, "v_prediction") for c in SIGMA_SPACE])
def test_generate_is_the_diffusers_pipelines_sampler(pipe, case, prediction_type):
    """Deterministic schedulers: generate() ends where StableDiffusionPipeline.__call__ ends (same z_T, steps, g)."""
    model = model_for(pipe, case, prediction_type)
    steps = STEPS.get(case, 3)
    traj = model.generate(PROMPT, 3, Uniform(steps))
    noise = model.initial_latents(3) / float(model.scheduler.init_noise_sigma)  # the pipeline scales it itself
    out = model.pipe(PROMPT, latents=noise, num_inference_steps=steps, guidance_scale=model.guidance_scale,
                     output_type="latent").images
    assert torch.allclose(traj.latents[-1], out[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("case", [*SIGMA_SPACE, "EulerAncestralDiscreteScheduler", "DDIMScheduler"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_x0_and_eps_on_the_schedulers_scale(pipe, case, prediction_type):
    """c·z = √ᾱ·x0 + √(1−ᾱ)·ε on every row, and x0 is the scheduler's own pred_original_sample."""
    model = model_for(pipe, case, prediction_type)
    traj = model.generate(PROMPT, 0, Uniform(3))
    sigma_space = case != "DDIMScheduler"
    assert (traj.input_scales < 1).all() == sigma_space and (traj.input_scales == 1).all() != sigma_space
    for i in range(traj.num_steps):
        c, a = traj.input_scales[i], traj.alpha_bars[i]
        assert torch.allclose(c * traj.latents[i], a.sqrt() * traj.x0[i] + (1 - a).sqrt() * traj.eps[i], atol=1e-4)
        scheduler = batched_state(traj.scheduler_states[i], 1)
        kwargs = {"generator": torch.Generator()} if "generator" in step_parameters(scheduler) else {}
        res = scheduler.step(traj.outputs[i: i + 1], traj.timesteps[i], traj.latents[i: i + 1], **kwargs)
        assert torch.allclose(res.pred_original_sample[0], traj.x0[i], atol=1e-4, rtol=1e-4), i


def test_second_order_schedulers_record_both_evaluations(pipe):
    heun = model_for(pipe, "HeunDiscreteScheduler").generate(PROMPT, 0, Uniform(3))
    assert heun.stages.tolist() == [0, 1, 0, 1, 0]  # the last step is Euler's, from σ_min to 0
    assert heun.timesteps[1] == heun.timesteps[2]  # the corrector runs at the next step's timestep
    euler = model_for(pipe, "EulerDiscreteScheduler").generate(PROMPT, 0, Uniform(3))
    assert euler.stages.tolist() == [0, 0, 0]


def test_the_static_list_of_schedulers_taking_timesteps_is_diffusers_own():
    from diffexplain.models.schedulers import SCHEDULERS
    from diffexplain.schedules import accepts_timesteps

    assert schedulers_accepting_timesteps() == [n for n, cls in SCHEDULERS.items() if accepts_timesteps(cls)]


@pytest.mark.parametrize("name", [n for n in schedulers_accepting_timesteps() if n not in SHORT_NAMES])
def test_custom_timesteps_on_every_scheduler_that_takes_them(pipe, name):
    model = model_for(pipe, name)
    traj = model.generate(PROMPT, 0, Custom([900, 500, 100]))
    assert traj.timesteps[traj.stages == 0].tolist() == [900, 500, 100]
    i = traj.num_steps - 1
    assert torch.equal(Outcome(model, traj, i)(traj.latents[i: i + 1])[0], traj.latents[i + 1])


def test_schedulers_without_custom_timesteps_name_those_that_can(pipe):
    model = model_for(pipe, "LMSDiscreteScheduler")
    with pytest.raises(UserError, match="EulerDiscreteScheduler") as err:
        model.generate(PROMPT, 0, Custom([900, 500, 100]))
    assert "LMSDiscreteScheduler" not in str(err.value).split("take them:")[1]


def test_a_schedule_the_scheduler_rejects_is_a_user_error(pipe):
    with pytest.raises(UserError, match="schedule.num_steps=3 .*PNDMScheduler"):
        model_for(pipe, "PNDMScheduler").generate(PROMPT, 0, Uniform(3))


def test_bad_scheduler_settings_raise_one_line_user_errors(pipe):
    with pytest.raises(UserError, match="model.scheduler") as err:
        DiffusionModel(copy.copy(pipe), scheduler="Euler")
    message = str(err.value)
    assert "\n" not in message and all(n in message for n in ["EulerDiscreteScheduler", "dpm_solver", "ddim"])
    with pytest.raises(UserError, match="model.scheduler_config"):
        DiffusionModel(copy.copy(pipe), scheduler="dpm_solver", scheduler_config={"algorithm": "sde"})
    with pytest.raises(UserError, match="model.eta"):
        DiffusionModel(copy.copy(pipe), scheduler="EulerDiscreteScheduler", eta=0.5)
