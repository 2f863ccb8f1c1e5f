"""The swappable samplers (``model.scheduler``): every diffusers scheduler Stable Diffusion pipelines accept.

``model.scheduler`` takes a diffusers class name (``EulerDiscreteScheduler``, ``HeunDiscreteScheduler``,
``DDPMScheduler``, ...) or one of the short names ``ddim``, ``dpm_solver``, ``pndm``, ``unipc``; the new scheduler is
built from the pipeline's scheduler config (its betas and ``prediction_type``), with ``model.scheduler_config``
overrides (e.g. ``{algorithm_type: sde-dpmsolver++}`` or ``{use_karras_sigmas: true}``).

Families, all handled by :class:`~diffexplain.models.DiffusionModel`:
- variance-preserving (DDIM, DDPM, PNDM, DPM-Solver, UniPC, DEIS): latents z = √ᾱ·x0 + √(1−ᾱ)·ε;
- sigma-space (Euler, Euler ancestral, Heun, LMS, KDPM2, KDPM2 ancestral): latents x = x0 + σ·ε, the UNet sees
  x/√(σ²+1) (``init_noise_sigma != 1``);
- second order (Heun, KDPM2): two UNet evaluations per step;
- stochastic (DDPM, Euler/KDPM2 ancestral, DDIM with ``model.eta > 0``, the ``sde-`` DPM-Solver variants): noise is
  drawn in ``step`` from seeds the trajectory records, so explainers replay it.

Flow-matching pipelines (SD3, Flux) keep their own ``FlowMatchEulerDiscreteScheduler`` (its config can still be
overridden); diffusion samplers are refused on them, and flow-matching samplers on diffusion models.

Not offered: ``EDMEulerScheduler`` (EDM preconditioning: it feeds the UNet log-σ "timesteps" that DDPM-trained SD
models never saw) and ``DPMSolverSDEScheduler`` (needs the ``torchsde`` package, which is not a dependency).
"""

from __future__ import annotations

import inspect

import diffusers

from diffexplain.config import options
from diffexplain.errors import check

SHORT_NAMES = options.SCHEDULER_SHORT_NAMES
NOT_OFFERED = options.SCHEDULERS_NOT_OFFERED
# the static list validation offers (without importing diffusers); tests/test_validation.py checks it against diffusers
CLASS_NAMES = options.SCHEDULER_CLASSES
SCHEDULERS = {**{short: getattr(diffusers, cls) for short, cls in SHORT_NAMES.items()},
              **{name: getattr(diffusers, name) for name in CLASS_NAMES}}


def scheduler_class(name: str):
    """The diffusers class for a ``model.scheduler`` choice (a short name or a class name)."""
    check(name in SCHEDULERS, "model.scheduler", name, f"one of {list(SCHEDULERS)} or null")
    return SCHEDULERS[name]


def swap_scheduler(pipe, name: str | None, overrides: dict | None = None):
    """Replace ``pipe.scheduler`` with scheduler ``name`` (None keeps its class) built from the pipeline's scheduler
    config, with ``overrides`` of that config."""
    if name is None and not overrides:
        return pipe.scheduler
    cls = type(pipe.scheduler) if name is None else scheduler_class(name)
    check(is_flow_matching(pipe.scheduler) == cls.__name__.startswith("FlowMatch"), "model.scheduler", name,
          f"null: this model was trained for {type(pipe.scheduler).__name__}, and flow-matching and diffusion "
          "samplers do not swap")
    overrides = dict(overrides or {})
    known = set(inspect.signature(cls.__init__).parameters) - {"self"}
    for key in overrides:
        check(key in known, "model.scheduler_config", key, f"config keys of {cls.__name__}: {sorted(known)}")
    pipe.scheduler = cls.from_config(pipe.scheduler.config, **overrides)
    return pipe.scheduler


def is_flow_matching(scheduler) -> bool:
    """Whether the scheduler samples a rectified flow (SD3, Flux): z = (1−σ)·x0 + σ·ε, the model predicts v = ε − x0."""
    return type(scheduler).__name__.startswith("FlowMatch")


def is_sigma_space(scheduler) -> bool:
    """Whether latents live on the σ scale (x = x0 + σ·ε, Karras et al.) rather than the ᾱ scale."""
    return float(getattr(scheduler, "init_noise_sigma", 1.0)) != 1.0


def step_parameters(scheduler) -> set[str]:
    """The keyword arguments the scheduler's ``step`` takes (``generator``, ``eta``, ...)."""
    return set(inspect.signature(scheduler.step).parameters)
