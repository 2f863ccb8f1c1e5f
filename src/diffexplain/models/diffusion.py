"""``DiffusionModel``: the one adapter explainers use to drive a diffusers text-to-image pipeline.

It uses only the pipeline's public components (tokenizer/text encoder through ``encode_prompt``, UNet,
scheduler, VAE); it never copies a pipeline's ``__call__``. Every UNet evaluation is batched and guided:
the unconditional and conditional halves of classifier-free guidance go through the UNet in one call.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from diffexplain.errors import check
from diffexplain.models.loading import load_pipeline
from diffexplain.models.schedulers import swap_scheduler

if TYPE_CHECKING:
    from diffexplain.schedules import Schedule


@dataclass
class Conditioning:
    """Text conditioning for one prompt: row 0 unconditional (negative prompt), row 1 conditional."""

    embeds: torch.Tensor  # [2, L, D]
    added: dict[str, torch.Tensor] = field(default_factory=dict)  # SDXL extras, each [2, ...]

    def expand(self, n: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Rows for a batch of ``n`` latents laid out as [uncond × n, cond × n]."""

        def rep(x):
            return x.repeat_interleave(n, dim=0)

        return rep(self.embeds), {k: rep(v) for k, v in self.added.items()}


@dataclass
class Trajectory:
    """One sampled denoising trajectory; explainers read it and never re-run it.

    Index i is the i-th step of the schedule: ``latents[i]`` is z at ``timesteps[i]`` (the UNet input),
    ``latents[i + 1]`` the scheduler's output; ``latents[-1]`` is the final latent.
    """

    prompt: str
    negative_prompt: str
    seed: int
    timesteps: torch.Tensor  # [T] long
    latents: torch.Tensor  # [T+1, C, h, w]
    eps: torch.Tensor  # [T, C, h, w] guided noise prediction
    x0: torch.Tensor  # [T, C, h, w] x0-prediction (latent space)
    cond: Conditioning
    scheduler_states: list = field(repr=False, default_factory=list)  # scheduler before step i

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def check_steps(self, steps, key: str = "explainer.steps") -> list[int]:
        """Resolve step indices for this trajectory (see :func:`resolve_steps`)."""
        return resolve_steps(steps, self.num_steps, key)


def resolve_steps(steps, num_steps: int, key: str = "explainer.steps") -> list[int]:
    """Step indices of a ``num_steps`` schedule: None = every step; negatives count from the end."""
    if steps is None:
        return list(range(num_steps))
    if isinstance(steps, int):
        steps = [steps]
    out = []
    for s in steps:
        check(isinstance(s, int) and -num_steps <= s < num_steps, key, s,
              f"step indices in [0, {num_steps - 1}] (or negative from the end) for a {num_steps}-step schedule")
        out.append(s % num_steps)
    return out


class DiffusionModel:
    """Adapter over a diffusers text-to-image pipeline (Stable Diffusion 1.x/2.x, SDXL, the embedded Shapes model)."""

    def __init__(self, pipe, guidance_scale: float = 7.5, scheduler: str | None = None, resolution: int | None = None):
        check(guidance_scale >= 0, "model.guidance_scale", guidance_scale, "a number >= 0")
        self.pipe = pipe
        self.guidance_scale = float(guidance_scale)
        swap_scheduler(pipe, scheduler)
        self.vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        self.resolution = resolution or pipe.unet.config.sample_size * self.vae_scale
        check(self.resolution % self.vae_scale == 0, "model.resolution", resolution,
              f"a multiple of the VAE's downsampling factor {self.vae_scale}")

    @classmethod
    def from_pretrained(cls, path: str, dtype: str = "float32", scheduler: str | None = None,
                        guidance_scale: float = 7.5, resolution: int | None = None, load_kwargs: dict | None = None):
        """Load with ``diffusers`` ``from_pretrained`` (a hub id or a local directory)."""
        pipe = load_pipeline(path, dtype=dtype, **(load_kwargs or {}))
        return cls(pipe, guidance_scale=guidance_scale, scheduler=scheduler, resolution=resolution)

    # -- components -------------------------------------------------------------------------------
    @property
    def unet(self):
        return self.__dict__.get("_unet") or self.pipe.unet

    def with_unet(self, unet) -> DiffusionModel:
        """The same adapter (pipeline, scheduler, guidance) with another UNet, e.g. a re-initialised copy."""
        other = copy.copy(self)
        other._unet = unet
        return other

    @property
    def scheduler(self):
        return self.pipe.scheduler

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        side = self.resolution // self.vae_scale
        return (self.pipe.unet.config.in_channels, side, side)

    def to(self, device) -> DiffusionModel:
        self.pipe.to(device)
        return self

    # -- building blocks --------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, prompt: str, negative_prompt: str = "") -> Conditioning:
        """Encode one prompt with its unconditional (negative-prompt) half."""
        out = self.pipe.encode_prompt(prompt=prompt, device=self.device, num_images_per_prompt=1,
                                      do_classifier_free_guidance=True, negative_prompt=negative_prompt)
        if len(out) == 4:  # SDXL: (embeds, negative, pooled, negative pooled)
            embeds, neg, pooled, neg_pooled = out
            side = self.resolution
            time_ids = torch.tensor([[side, side, 0, 0, side, side]], device=self.device, dtype=embeds.dtype)
            added = {"text_embeds": torch.cat([neg_pooled, pooled]), "time_ids": time_ids.repeat(2, 1)}
            return Conditioning(torch.cat([neg, embeds]), added)
        embeds, neg = out
        return Conditioning(torch.cat([neg, embeds]))

    def unet_halves(self, latents: torch.Tensor, t, cond: Conditioning) -> tuple[torch.Tensor, torch.Tensor]:
        """One batched UNet call on the guidance batch [latents; latents] [2N, C, h, w] at timestep ``t``.

        Returns the raw (unguided) model outputs ``(uncond, text)``, each [N, C, h, w], in the scheduler's
        ``prediction_type``. Gradients flow if enabled by the caller.
        """
        n = latents.shape[0]
        embeds, added = cond.expand(n)
        x = self.scheduler.scale_model_input(torch.cat([latents, latents]), t)
        kwargs = {"added_cond_kwargs": added} if added else {}
        out = self.unet(x, t, encoder_hidden_states=embeds, return_dict=False, **kwargs)[0]
        uncond, text = out.chunk(2)
        return uncond, text

    def guide(self, uncond: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Classifier-free guidance: uncond + g · (text − uncond)."""
        return uncond + self.guidance_scale * (text - uncond)

    def unet_output(self, latents: torch.Tensor, t, cond: Conditioning) -> torch.Tensor:
        """One batched guided UNet evaluation of ``latents`` [N, C, h, w] at timestep ``t``.

        Returns the guided model output (in the scheduler's ``prediction_type``):
        out_uncond + g · (out_text − out_uncond). Gradients flow if enabled by the caller.
        """
        return self.guide(*self.unet_halves(latents, t, cond))

    def _alpha_bar(self, t, like: torch.Tensor) -> torch.Tensor:
        return self.scheduler.alphas_cumprod.to(like.device, torch.float32)[int(t)]

    def eps_and_x0(self, output: torch.Tensor, latents: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise prediction and x0-prediction from a model output of any ``prediction_type``."""
        a = self._alpha_bar(t, latents)
        sa, sb = a.sqrt(), (1 - a).sqrt()
        kind = self.scheduler.config.prediction_type
        if kind == "epsilon":
            eps = output
            x0 = (latents - sb * eps) / sa
        elif kind == "v_prediction":
            x0 = sa * latents - sb * output
            eps = sa * output + sb * latents
        else:  # "sample"
            x0 = output
            eps = (latents - sa * x0) / sb
        return eps.to(latents.dtype), x0.to(latents.dtype)

    def step(self, trajectory: Trajectory, i: int, output: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """The scheduler step of step ``i`` applied to a batch: the same solver state the trajectory had at i.

        ``output``/``latents`` are [N, C, h, w]; the trajectory's scheduler is not touched.
        """
        scheduler = copy.deepcopy(trajectory.scheduler_states[i])
        return scheduler.step(output, trajectory.timesteps[i], latents, return_dict=False)[0]

    def rollout(self, trajectory: Trajectory, i: int, latents: torch.Tensor, output: torch.Tensor | None = None):
        """Continue the trajectory's sampler from step ``i`` for a batch of (perturbed) z_t to final latents.

        ``output`` optionally gives the already computed guided model output at step ``i``.
        """
        scheduler = copy.deepcopy(trajectory.scheduler_states[i])
        z = latents
        for j in range(i, trajectory.num_steps):
            t = trajectory.timesteps[j]
            out = output if (j == i and output is not None) else self.unet_output(z, t, trajectory.cond)
            z = scheduler.step(out, t, z, return_dict=False)[0]
        return z

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        """Latents [N, C, h, w] → images [N, 3, H, W] in [0, 1] (float32) through the VAE."""
        vae = self.pipe.vae
        images = []
        for chunk in latents.split(batch_size):
            img = vae.decode(chunk.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
            images.append((img.float() / 2 + 0.5).clamp(0, 1))
        return torch.cat(images)

    def decode_with_grad(self, latents: torch.Tensor) -> torch.Tensor:
        """Like :meth:`decode` but differentiable (for gradient-based explainers)."""
        vae = self.pipe.vae
        img = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
        return (img.float() / 2 + 0.5).clamp(0, 1)

    def initial_latents(self, seed: int) -> torch.Tensor:
        """z_T for ``seed``: drawn on the CPU so a seed gives the same noise on every device."""
        g = torch.Generator("cpu").manual_seed(int(seed))
        z = torch.randn((1, *self.latent_shape), generator=g, dtype=torch.float32)
        return (z * self.scheduler.init_noise_sigma).to(self.device, self.dtype)

    # -- sampling ---------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, prompt: str, seed: int, schedule: Schedule, negative_prompt: str = "") -> Trajectory:
        """Sample once and keep every step's timestep, latent, guided noise prediction and x0-prediction."""
        cond = self.encode(prompt, negative_prompt)
        schedule.apply(self.scheduler, device=self.device)
        timesteps = self.scheduler.timesteps.clone()
        z = self.initial_latents(seed)
        latents, eps_all, x0_all, states = [z[0]], [], [], []
        for t in timesteps:
            states.append(copy.deepcopy(self.scheduler))
            out = self.unet_output(z, t, cond)
            eps, x0 = self.eps_and_x0(out, z, t)
            z = self.scheduler.step(out, t, z, return_dict=False)[0]
            latents.append(z[0])
            eps_all.append(eps[0])
            x0_all.append(x0[0])
        return Trajectory(prompt=prompt, negative_prompt=negative_prompt, seed=int(seed),
                          timesteps=timesteps.cpu().long(), latents=torch.stack(latents), eps=torch.stack(eps_all),
                          x0=torch.stack(x0_all), cond=cond, scheduler_states=states)
