"""The swappable samplers (``model.scheduler``): diffusers schedulers of the variance-preserving family.

All of them keep latents on the ᾱ scale (``init_noise_sigma == 1``), so x0 = (z − √(1−ᾱ)·ε)/√ᾱ holds for every
step, and deterministic steps, so a masked evaluation can be stepped like the unmasked one. Sigma-space (Euler, Heun, LMS) and stochastic (DDPM) schedulers are not offered.
"""

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)

from diffexplain.errors import check

SCHEDULERS = {
    "ddim": DDIMScheduler,
    "dpm_solver": DPMSolverMultistepScheduler,
    "pndm": PNDMScheduler,
    "unipc": UniPCMultistepScheduler,
}


def swap_scheduler(pipe, name: str | None):
    """Replace ``pipe.scheduler`` with scheduler ``name`` built from the pipeline's scheduler config (None keeps it)."""
    if name is None:
        return pipe.scheduler
    check(name in SCHEDULERS, "model.scheduler", name, f"one of {sorted(SCHEDULERS)} or null")
    pipe.scheduler = SCHEDULERS[name].from_config(pipe.scheduler.config)
    return pipe.scheduler
