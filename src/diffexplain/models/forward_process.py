"""The DDPM forward process q(x_t | x_0) = N(√ᾱ_t·x_0, (1 − ᾱ_t)·I), through diffusers' ``DDPMScheduler.add_noise``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import DDPMScheduler

from diffexplain.errors import UserError, check, shorten
from diffexplain.config.options import BETA_SCHEDULES


class ForwardProcess:
    """Noise images at chosen training timesteps of a DDPM schedule.

    ``schedule``: a beta schedule of DDPM's 1000 training steps (``linear``: Ho et al.'s β from 1e-4 to 0.02, the
    default; ``scaled_linear``: Stable Diffusion's; ``squaredcos_cap_v2``: the cosine schedule), or a directory
    holding a diffusers ``scheduler_config.json`` (or a pipeline directory with a ``scheduler/`` subfolder), whose
    betas are used. Images live in DDPM's space [-1, 1].
    """

    def __init__(self, schedule: str = "linear"):
        key = "pipeline.noise.schedule"
        check(isinstance(schedule, str), key, schedule,
              f"one of {list(BETA_SCHEDULES)} or a directory with a scheduler_config.json")
        if schedule in BETA_SCHEDULES:
            self.scheduler = DDPMScheduler(beta_schedule=schedule)
        else:
            path = Path(schedule)
            nested = not (path / "scheduler_config.json").is_file() and (path / "scheduler").is_dir()
            sub = "scheduler" if nested else None
            check(path.is_dir() and (path / (sub or "") / "scheduler_config.json").is_file(), key, schedule,
                  f"one of {list(BETA_SCHEDULES)} or a directory with a scheduler_config.json")
            try:
                self.scheduler = DDPMScheduler.from_pretrained(str(path), subfolder=sub)
            except (OSError, ValueError, TypeError) as e:
                raise UserError(key, schedule, shorten(f"a readable diffusers scheduler config ({e})", 300)) from e
        self.schedule = schedule

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    def timesteps(self, spec: int | list[int]) -> list[int]:
        """``spec`` evenly spaced timesteps over [0, T − 1] (rounded, both ends included), or the listed ones;
        ascending, without repeats."""
        n = self.num_train_timesteps
        if isinstance(spec, int) and not isinstance(spec, bool):
            check(1 <= spec <= n, "pipeline.noise.timesteps", spec, f"an integer in [1, {n}] or a list of timesteps")
            return sorted({int(t) for t in np.linspace(0, n - 1, spec).round()})
        check(isinstance(spec, (list, tuple)) and len(spec) > 0
              and all(isinstance(t, int) and 0 <= t < n for t in spec), "pipeline.noise.timesteps", spec,
              f"an integer in [1, {n}] or a non-empty list of timesteps in [0, {n - 1}]")
        return sorted({int(t) for t in spec})

    def alpha_bar(self, t: int) -> float:
        """ᾱ_t: the share of the clean image's variance left at timestep ``t``."""
        return float(self.scheduler.alphas_cumprod[int(t)])

    def noise(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t·x0 + √(1 − ᾱ_t)·eps for [B, C, H, W] images in [-1, 1], noises and [B] timesteps."""
        return self.scheduler.add_noise(x0, eps, t.to(x0.device, torch.long))

    def describe(self) -> dict:
        cfg = self.scheduler.config
        return {"schedule": self.schedule, "beta_schedule": cfg.beta_schedule, "beta_start": cfg.beta_start,
                "beta_end": cfg.beta_end, "num_train_timesteps": self.num_train_timesteps}
