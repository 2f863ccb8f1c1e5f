"""What a (perturbed) latent z_t at step i leads to: the outcomes DF-RISE, the Captum explainers and the
deletion/insertion games score against the unperturbed one.

Targets:
- ``output``: the guided model output itself (ε, v or x0, whatever the model predicts) — the only target without the
  scheduler's direct path from z_t to its result, so it asks what the *network* does with the latent;
- ``paper``: the guided noise prediction ε of the evaluation, compared with the unperturbed *next latent* z_{t−1}
  (the authors' DF-RISE code; it compares unlike quantities and is kept to reproduce their figures).
- ``next_latent``: the scheduler step of the evaluation (z_{t−1}), with the trajectory's own solver state.
- ``x0``: the decoded x0-prediction of the evaluation.
- ``final``: the latent rolled out through every remaining step with the trajectory's scheduler state, decoded.

The reference (the unperturbed outcome) is computed through the same path from the unperturbed z_t, so it is the
outcome of *this* model — for a re-initialised copy in the sanity check, that copy's own outcome.
Latent-domain outcomes are decoded when the similarity compares images (``domain == "image"``).
"""

from __future__ import annotations

import torch

from diffexplain.errors import check

from diffexplain.config.options import OUTCOME_TARGETS as TARGETS


class Outcome:
    """``outcome(latents[N, C, h, w]) -> [N, ...]`` for one step of one trajectory; ``reference()`` -> [1, ...].

    Differentiable when gradients are enabled (decoding too). The trajectory is never modified. Outcomes are float32
    whatever ``model.dtype`` (only the UNet and VAE calls run in it); stochastic schedulers replay the trajectory's
    own step noise, so the unperturbed z_t leads exactly to the trajectory's z_{t−1}.
    """

    def __init__(self, model, trajectory, i: int, target: str = "next_latent", image_domain: bool = False,
                 key: str = "explainer.target"):
        check(target in TARGETS, key, target, f"one of {list(TARGETS)}")
        self.model, self.trajectory, self.i, self.target = model, trajectory, i, target
        self.decoded = target in ("x0", "final") or image_domain
        self._reference: torch.Tensor | None = None

    @property
    def timestep(self):
        return self.trajectory.timesteps[self.i]

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.model.decode_with_grad(latents) if torch.is_grad_enabled() else self.model.decode(latents)

    def __call__(self, latents: torch.Tensor, output: torch.Tensor | None = None) -> torch.Tensor:
        """The outcome of one batched guided evaluation of ``latents`` (``output``: that evaluation, if known)."""
        model, traj, i, t = self.model, self.trajectory, self.i, self.timestep
        latents = latents.to(model.device, torch.float32)
        out = model.unet_output(latents, t, traj.cond) if output is None else output
        if self.target == "output":
            result = out
        elif self.target == "paper":
            result = model.eps_and_x0(out, latents, t)[0]
        elif self.target == "next_latent":
            result = model.step(traj, i, out, latents)
        elif self.target == "x0":
            result = model.eps_and_x0(out, latents, t)[1]
        else:
            result = model.rollout(traj, i, latents, output=out)
        return self._decode(result) if self.decoded else result

    def reference(self) -> torch.Tensor:
        """The unperturbed outcome [1, ...] (for ``paper``: the unperturbed next latent), computed once."""
        if self._reference is None:
            with torch.no_grad():
                z = self.trajectory.latents[self.i: self.i + 1].to(self.model.device, torch.float32)
                if self.target == "paper":
                    out = self.model.unet_output(z, self.timestep, self.trajectory.cond)
                    ref = self.model.step(self.trajectory, self.i, out, z)
                    ref = self._decode(ref) if self.decoded else ref
                else:
                    ref = self(z)
            self._reference = ref.detach()
        return self._reference
