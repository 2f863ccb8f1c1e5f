"""Timestep schedules: which timesteps of the diffusion chain a sampler visits.

``uniform`` keeps the scheduler's own spacing (the control); ``exp_early`` / ``exp_late`` are Park et al.'s
exponential sampling that concentrates steps at the start ("semantic") or end ("delicate") of denoising;
``custom`` takes an explicit list. Custom timesteps are set through ``scheduler.set_timesteps(timesteps=...)``.
"""

from __future__ import annotations

import inspect
import math

from diffexplain.errors import UserError, check


def accepts_timesteps(scheduler_cls) -> bool:
    """Whether a diffusers scheduler's ``set_timesteps`` takes custom ``timesteps``."""
    return "timesteps" in inspect.signature(scheduler_cls.set_timesteps).parameters


# The ``model.scheduler`` choices whose ``set_timesteps`` takes custom timesteps, known without importing diffusers
# (validation refuses a bad command in about a second); tests/test_schedulers.py checks the list against diffusers.
TIMESTEP_SCHEDULERS = ("dpm_solver", "DDPMScheduler", "EulerDiscreteScheduler", "HeunDiscreteScheduler",
                       "DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler")


def schedulers_accepting_timesteps() -> list[str]:
    """The ``model.scheduler`` choices that take custom timesteps."""
    return list(TIMESTEP_SCHEDULERS)


class Schedule:
    """Base: ``timesteps(T)`` returns the descending timesteps to visit, or ``None`` for the scheduler's own."""

    name = "schedule"

    def timesteps(self, num_train_timesteps: int) -> list[int] | None:
        raise NotImplementedError

    def apply(self, scheduler, device=None, **family_kwargs) -> list[int | float]:
        """Set the scheduler's timesteps and return those it will actually use, one per UNet evaluation.

        Second-order schedulers (Heun, KDPM2) evaluate the UNet twice per step, so they return about 2·num_steps
        timesteps; KDPM2's second evaluations sit at interpolated (fractional) timesteps. ``family_kwargs`` are what
        the model family's own pipeline passes to ``set_timesteps`` with the uniform schedule (Flux: its sigmas and
        resolution shift ``mu``). Flow-matching schedulers take only the uniform schedule: custom timesteps there
        bypass the model's sigma shift (diffusers warns that they disagree with the sigmas).
        """
        ts = self.timesteps(scheduler.config.num_train_timesteps)
        if ts is not None and type(scheduler).__name__.startswith("FlowMatch"):
            raise UserError("schedule", self.name, f"schedule=uniform for {type(scheduler).__name__} (flow matching "
                                                   "takes the model's own shifted sigma schedule)")
        if ts is not None and not accepts_timesteps(type(scheduler)):
            raise UserError(
                "model.scheduler", type(scheduler).__name__,
                f"schedule={self.name} sets custom timesteps; model.scheduler choices that take them: "
                + ", ".join(schedulers_accepting_timesteps()),
            )
        try:
            if ts is None:
                scheduler.set_timesteps(self.num_steps, device=device, **family_kwargs)
            else:
                scheduler.set_timesteps(timesteps=ts, device=device)
        except ValueError as e:  # e.g. PNDM's Runge-Kutta warm-up needs at least 4 steps
            raise UserError("schedule.num_steps", self.num_steps,
                            f"a schedule {type(scheduler).__name__} can take; it says: {str(e).splitlines()[0]}") from e
        return [int(t) if float(t).is_integer() else float(t) for t in scheduler.timesteps]


def _check_steps(num_steps: int) -> None:
    check(isinstance(num_steps, int) and not isinstance(num_steps, bool) and num_steps >= 1,
          "schedule.num_steps", num_steps, "an integer >= 1")


def _check_descending(ts: list[int], num_train_timesteps: int, key: str) -> list[int]:
    check(all(0 <= t < num_train_timesteps for t in ts), key, ts,
          f"timesteps in [0, {num_train_timesteps - 1}]")
    check(all(a > b for a, b in zip(ts, ts[1:])), key, ts,
          "strictly decreasing timesteps without repeats (for exp schedules: fewer steps or a smaller lam)")
    return ts


class Uniform(Schedule):
    """The scheduler's own spacing with ``num_steps`` steps."""

    name = "uniform"

    def __init__(self, num_steps: int = 20):
        _check_steps(num_steps)
        self.num_steps = num_steps

    def timesteps(self, num_train_timesteps: int) -> None:
        return None


class _Exponential(Schedule):
    def __init__(self, num_steps: int = 30, lam: float = 60.0):
        _check_steps(num_steps)
        check(lam >= 0, "schedule.lam", lam, "a number >= 0")
        self.num_steps, self.lam = num_steps, lam

    def _check(self, ts: list[int], num_train_timesteps: int) -> list[int]:
        """Exponential spacing floored to integers repeats timesteps when the steps are too many for ``lam``."""
        check(all(0 <= t < num_train_timesteps for t in ts) and all(a > b for a, b in zip(ts, ts[1:])),
              "schedule.num_steps", self.num_steps,
              f"with schedule.lam={self.lam:g} the {self.name} schedule repeats timesteps (its exponential spacing is "
              "floored to integers); use fewer steps or a larger schedule.lam")
        return ts

    def _powers(self, total: int) -> list[int]:
        """⌊α^(j+1+λ)⌋ for j = 0..N−1 with α = total^(1/(N+λ))."""
        alpha = total ** (1.0 / (self.num_steps + self.lam))
        return [math.floor(alpha ** (j + 1 + self.lam)) for j in range(self.num_steps)]


class ExponentialEarly(_Exponential):
    """Dense early (high-noise) steps: t_j = 1000 − ⌊α^(j+1+λ)⌋, prepend 999, drop the last."""

    name = "exp_early"

    def timesteps(self, num_train_timesteps: int) -> list[int]:
        ts = [num_train_timesteps - p for p in self._powers(num_train_timesteps)]
        ts = ([num_train_timesteps - 1] + ts)[: self.num_steps]
        return self._check(ts, num_train_timesteps)


class ExponentialLate(_Exponential):
    """Dense late (low-noise) steps: t_j = ⌊α^(j+1+λ)⌋ sorted descending, a leading 1000 becomes 999."""

    name = "exp_late"

    def timesteps(self, num_train_timesteps: int) -> list[int]:
        ts = sorted(self._powers(num_train_timesteps), reverse=True)
        if ts and ts[0] == num_train_timesteps:
            ts[0] = num_train_timesteps - 1
        return self._check(ts, num_train_timesteps)


class Custom(Schedule):
    """An explicit list of timesteps, visited in the given (strictly decreasing) order."""

    name = "custom"

    def __init__(self, timesteps: list[int]):
        check(bool(timesteps), "schedule.timesteps", timesteps, "a non-empty list of integers")
        self._ts = [int(t) for t in timesteps]
        self.num_steps = len(self._ts)

    def timesteps(self, num_train_timesteps: int) -> list[int]:
        return _check_descending(list(self._ts), num_train_timesteps, "schedule.timesteps")
