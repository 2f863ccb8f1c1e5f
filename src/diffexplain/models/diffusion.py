"""``DiffusionModel``: the one adapter explainers use to drive a diffusers text-to-image pipeline.

It uses only the pipeline's public components (tokenizer/text encoder through ``encode_prompt``, the denoiser — a
UNet or a transformer, see :mod:`diffexplain.models.denoisers` —, scheduler, VAE); it never copies a pipeline's
``__call__``. Every denoiser evaluation is batched and guided: the unconditional and conditional halves of
classifier-free guidance go through the denoiser in one call. Latents are always on the unpacked latent grid
[C, h, w], whatever the family's token layout.
"""

from __future__ import annotations

import copy
import hashlib
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from diffusers import StableDiffusionXLPipeline

from diffexplain.errors import check
from diffexplain.models.denoisers import denoiser_for
from diffexplain.models.loading import load_pipeline
from diffexplain.models.schedulers import is_flow_matching, is_sigma_space, step_parameters, swap_scheduler

if TYPE_CHECKING:
    from diffexplain.schedules import Schedule


@dataclass
class Conditioning:
    """Text conditioning for one prompt: row 0 unconditional (negative prompt), row 1 conditional; a single
    conditional row for guidance-distilled models without true CFG (Flux.1)."""

    embeds: torch.Tensor  # [rows, L, D]
    added: dict[str, torch.Tensor] = field(default_factory=dict)  # the family's extras, each [rows, ...]

    @property
    def rows(self) -> int:
        return self.embeds.shape[0]

    def expand(self, n: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Rows for a batch of ``n`` latents laid out as [uncond × n, cond × n] (or [cond × n])."""

        def rep(x):
            return x.repeat_interleave(n, dim=0)

        return rep(self.embeds), {k: rep(v) for k, v in self.added.items()}


@dataclass
class Trajectory:
    """One sampled denoising trajectory; explainers read it and never re-run it.

    Row i is the i-th denoiser evaluation of the sampler: ``latents[i]`` is its input z at ``timesteps[i]``,
    ``latents[i + 1]`` the scheduler's output; ``latents[-1]`` is the final latent. Second-order schedulers (Heun,
    KDPM2) evaluate the UNet twice per step: both evaluations are rows (``stages`` 0 then 1), so ``latents[i + 1]``
    after a stage-0 row is the solver's intermediate (predictor) latent and ``explainer.steps`` index evaluations.

    Tensors are float32 on the model's device whatever ``model.dtype`` (the networks run in that dtype; sampling,
    x0/ε and everything scored downstream stay in float32); ``cond`` is in the text encoder's dtype; ``timesteps``
    and the per-row metadata are on the CPU.
    Latents are on the scheduler's own scale: ``input_scales[i] · latents[i]`` equals √ᾱ·x0 + √(1−ᾱ)·ε with
    ᾱ = ``alpha_bars[i]`` (scale 1 for variance-preserving schedulers; 1/√(σ²+1) and ᾱ = 1/(σ²+1) for sigma-space ones,
    whose latents are x0 + σ·ε; for flow matching, latents (1−σ)·x0 + σ·ε, scale 1/√((1−σ)²+σ²)). It is the UNet's
    input for the first two; flow-matching transformers take the latent itself.
    Stochastic schedulers draw their step noise from ``noise_seeds[i]`` (one CPU generator per batch row, all seeded
    alike), so :meth:`DiffusionModel.step` and :meth:`DiffusionModel.rollout` replay the trajectory's own noise.
    """

    prompt: str
    negative_prompt: str
    seed: int
    timesteps: torch.Tensor  # [T] the scheduler's timesteps (long, or float for sigma-space schedulers)
    latents: torch.Tensor  # [T+1, C, h, w]
    eps: torch.Tensor  # [T, C, h, w] guided noise prediction
    x0: torch.Tensor  # [T, C, h, w] x0-prediction (latent space)
    cond: Conditioning
    scheduler_states: list = field(repr=False, default_factory=list)  # scheduler as step i sees it
    noise_seeds: torch.Tensor | None = None  # [T] long: the seed of step i's noise
    input_scales: torch.Tensor | None = None  # [T] float: input_scales[i] · latents[i] = √ᾱ·x0 + √(1−ᾱ)·ε
    alpha_bars: torch.Tensor | None = None  # [T] float: the ᾱ the sampler assigns to row i
    stages: torch.Tensor | None = None  # [T] long: 0 = first UNet evaluation of a solver step, 1 = its second
    outputs: torch.Tensor | None = None  # [T, C, h, w] guided model output (in the scheduler's prediction_type)

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


def noise_seeds(seed: int, n: int) -> torch.Tensor:
    """[n] seeds for the step noise of a trajectory with ``seed`` (independent of the z_T stream of that seed)."""
    return torch.tensor([int(hashlib.sha1(f"step-noise|{int(seed)}|{i}".encode()).hexdigest()[:15], 16)
                         for i in range(n)], dtype=torch.long)


def batched_state(scheduler, n: int):
    """A copy of a scheduler whose per-sample state (tensors of batch 1: a multistep solver's history, Heun's
    predictor sample, PNDM's Runge–Kutta accumulators) is repeated to a batch of ``n``, so that steps which update
    that state in place work on a batch."""
    scheduler = copy.deepcopy(scheduler)

    def grow(x):
        if torch.is_tensor(x) and x.dim() == 4 and x.shape[0] == 1 and n > 1:
            return x.expand(n, *x.shape[1:]).clone()
        if isinstance(x, list):
            return [grow(v) for v in x]
        return x

    for name, value in vars(scheduler).items():
        setattr(scheduler, name, grow(value))
    return scheduler


class DiffusionModel:
    """Adapter over a diffusers text-to-image pipeline: Stable Diffusion 1.x/2.x, SDXL, the embedded Shapes model,
    SD3/3.5, Flux.1, PixArt-α/Σ (``family``: unet | sd3 | flux | pixart).

    Precision: the text encoder, denoiser and VAE run in ``model.dtype`` (SDXL's VAE stays float32 in float16 when its
    config says ``force_upcast``, as diffusers' SDXL pipeline does); latents, model outputs, ε/x0, scheduler steps
    and decoded images are float32.

    ``guidance_scale`` is the classifier-free guidance scale, except on Flux.1, where it is the distilled guidance
    embedding of dev (ignored by schnell) and ``true_cfg_scale`` > 1 turns on true CFG against the negative prompt.
    ``max_sequence_length`` caps the T5 prompt length of SD3, Flux and PixArt (None: the pipeline's default).
    """

    def __init__(self, pipe, guidance_scale: float = 7.5, scheduler: str | None = None, resolution: int | None = None,
                 scheduler_config: dict | None = None, eta: float = 0.0, true_cfg_scale: float = 1.0,
                 max_sequence_length: int | None = None):
        check(guidance_scale >= 0, "model.guidance_scale", guidance_scale, "a number >= 0")
        check(eta >= 0, "model.eta", eta, "a number >= 0 (DDIM's η; 0 = deterministic)")
        self.pipe = pipe
        self.family = denoiser_for(pipe)
        check(true_cfg_scale == 1.0 or self.family.rows(1.0) == 1,  # only a guidance-distilled model adds true CFG
              "model.true_cfg_scale", true_cfg_scale,
              "1 (true CFG is Flux's; the other families guide with model.guidance_scale)")
        self.guidance_scale = float(guidance_scale)
        self.true_cfg_scale = float(true_cfg_scale)
        self.max_sequence_length = max_sequence_length
        swap_scheduler(pipe, scheduler, scheduler_config)
        check(eta == 0 or "eta" in step_parameters(pipe.scheduler), "model.eta", eta,
              f"0 for {type(pipe.scheduler).__name__} (η > 0 needs a scheduler whose step takes it: DDIMScheduler)")
        self.eta = float(eta)
        self._input_scales: dict[float, float] = {}  # timestep → 1/√(σ²+1) of sigma-space samplers (see noise_level)
        if isinstance(pipe, StableDiffusionXLPipeline) and pipe.vae.dtype == torch.float16 \
                and getattr(pipe.vae.config, "force_upcast", False):
            pipe.vae.to(torch.float32)  # SDXL's VAE overflows in float16
        self.vae_scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        self.resolution = resolution or self.family.default_latent_side() * self.vae_scale
        side, why = self.family.token_side()
        multiple = self.vae_scale * side
        check(self.resolution % multiple == 0, "model.resolution", resolution,
              f"a multiple of {multiple} (the VAE's downsampling factor {self.vae_scale}"
              + (f" × {why})" if why else ")"))

    @classmethod
    def from_pretrained(cls, path: str, dtype: str = "float32", scheduler: str | None = None,
                        guidance_scale: float = 7.5, resolution: int | None = None, load_kwargs: dict | None = None,
                        scheduler_config: dict | None = None, eta: float = 0.0, true_cfg_scale: float = 1.0,
                        max_sequence_length: int | None = None):
        """Load with ``diffusers`` ``from_pretrained`` (a hub id or a local directory) in ``dtype``."""
        pipe = load_pipeline(path, dtype=dtype, **(load_kwargs or {}))
        return cls(pipe, guidance_scale=guidance_scale, scheduler=scheduler, resolution=resolution,
                   scheduler_config=scheduler_config, eta=eta, true_cfg_scale=true_cfg_scale,
                   max_sequence_length=max_sequence_length)

    # -- components -------------------------------------------------------------------------------
    @property
    def denoiser(self):
        """The network that predicts the noise (velocity): ``pipe.unet`` or ``pipe.transformer``."""
        return self.__dict__.get("_denoiser") or self.family.module

    def with_denoiser(self, denoiser) -> DiffusionModel:
        """The same adapter (pipeline, scheduler, guidance) with another denoiser, e.g. a re-initialised copy."""
        other = copy.copy(self)
        other._denoiser = denoiser
        return other

    def attention_recorder(self, latent_hw, attached: bool = False, rows: int = 2, layers: list[str] | None = None):
        """A :class:`~diffexplain.models.attention_capture.CrossAttentionRecorder` of this model's image→text
        attention (cross-attention of UNets and PixArt, joint attention of SD3 and Flux)."""
        from diffexplain.models.attention_capture import CrossAttentionRecorder

        return CrossAttentionRecorder(self.denoiser, latent_hw, attached=attached, family=self.family.family,
                                      rows=rows, layers=layers)

    @property
    def word_tokenizer(self):
        """The tokenizer of the text tokens the image attends to (CLIP for UNets and SD3, T5 for Flux and PixArt)."""
        return self.family.word_tokenizer

    @property
    def cfg_scale(self) -> float:
        """The classifier-free guidance scale :meth:`guide` applies."""
        return self.family.cfg_scale(self.guidance_scale, self.true_cfg_scale)

    @property
    def scheduler(self):
        return self.pipe.scheduler

    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    @property
    def dtype(self) -> torch.dtype:
        """The networks' dtype (``model.dtype``); latents and everything derived from them are float32."""
        return self.denoiser.dtype

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        side = self.resolution // self.vae_scale
        return (self.family.latent_channels(self.family.module), side, side)

    def to(self, device) -> DiffusionModel:
        self.pipe.to(device)
        if "_denoiser" in self.__dict__:
            self._denoiser.to(device)
        return self

    # -- building blocks --------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, prompt: str, negative_prompt: str = "") -> Conditioning:
        """Encode one prompt with its unconditional (negative-prompt) half (none for Flux without true CFG).

        An empty negative prompt is the pipeline's own default: the empty string's embedding for SD 1.x/2.x, SD3 and
        PixArt, zeros for SDXL (``force_zeros_for_empty_prompt``). SDXL adds the pooled embedding of its second text
        encoder and the time ids (original size, crop (0, 0), target size = ``model.resolution``); SD3 and Flux their
        pooled CLIP projections; PixArt the T5 attention mask; Flux.1-dev its distilled guidance value.
        """
        rows = self.family.rows(self.true_cfg_scale)
        embeds, added = self.family.encode(prompt, negative_prompt, self.device, self.resolution, rows,
                                           self.max_sequence_length, self.guidance_scale)
        return Conditioning(embeds, added)

    def noise_level(self, t) -> tuple[float, float]:
        """``(c, ᾱ)`` of timestep ``t`` under this model's sampler: c·z equals √ᾱ·x0 + √(1−ᾱ)·ε.

        Variance-preserving schedulers: c = 1 and ᾱ_t of the training schedule. Flow matching (z = (1−σ)·x0 + σ·ε,
        σ = t / num_train_timesteps): c = 1/√((1−σ)²+σ²), ᾱ = c²·(1−σ)². Sigma-space schedulers:
        c = 1/√(σ²+1) and ᾱ = c², with the σ the sampler used at ``t`` when this model generated through ``t`` (read
        from the scheduler, since KDPM2 interpolates σ between steps). Where two rows of a schedule share a timestep
        they share this level, the first row's (Heun's repeated timesteps have one σ; KDPM2 ancestral's last two
        rows, both clipped to t = 0, are 1e-7 apart), so a timestep's UNet evaluation is one function of t.
        """
        if is_flow_matching(self.scheduler):
            sigma = float(t) / self.scheduler.config.num_train_timesteps
            c = 1.0 / math.sqrt((1 - sigma) ** 2 + sigma ** 2)
            return c, (c * (1 - sigma)) ** 2
        if not is_sigma_space(self.scheduler):
            return 1.0, float(self.scheduler.alphas_cumprod[int(t)])
        c = self._input_scales.get(float(t))
        if c is None:
            raise ValueError(f"timestep {float(t)} was not visited by a trajectory this model's "
                             f"{type(self.scheduler).__name__} generated")
        return c, c * c

    def noise_latent(self, trajectory: Trajectory, i: int, generator: torch.Generator) -> torch.Tensor:
        """The pure-noise latent at row ``i`` [C, h, w] (float32, on the model's device): the noise part of z_i with
        the clean signal removed, on the latents' own scale. c·z = √ᾱ·x0 + √(1−ᾱ)·ε, so the noise part in latent
        units is √(1−ᾱ)·ε / c (√(1−ᾱ)·ε for variance-preserving schedulers, σ·ε in sigma space and flow matching);
        ε ~ N(0, I) is drawn from ``generator`` (CPU) so a seed gives the same noise on every device."""
        if trajectory.input_scales is not None and trajectory.alpha_bars is not None:
            c, alpha_bar = float(trajectory.input_scales[i]), float(trajectory.alpha_bars[i])
        else:
            c, alpha_bar = self.noise_level(trajectory.timesteps[i])
        eps = torch.randn(tuple(trajectory.latents.shape[1:]), generator=generator, dtype=torch.float32)
        return (eps * (max(1.0 - alpha_bar, 0.0) ** 0.5 / c)).to(self.device)

    def input_scale(self, t) -> float:
        """The factor the scheduler's ``scale_model_input`` applies to latents at ``t`` (1 for flow matching)."""
        return 1.0 if is_flow_matching(self.scheduler) else self.noise_level(t)[0]

    def unet_halves(self, latents: torch.Tensor, t, cond: Conditioning) -> tuple[torch.Tensor, torch.Tensor]:
        """One batched denoiser call on the guidance batch [latents; latents] [2N, C, h, w] at timestep ``t``.

        Returns the raw (unguided) model outputs ``(uncond, text)``, each [N, C, h, w] float32, in the scheduler's
        ``prediction_type`` (the velocity for flow matching). The input is scaled as the scheduler's
        ``scale_model_input`` does and cast to the denoiser's dtype. Without an unconditional row (Flux.1 without
        true CFG) the batch is [latents] and both halves are its output. Gradients flow if enabled by the caller.
        """
        n, dtype = latents.shape[0], self.dtype
        embeds, added = cond.expand(n)
        scale = self.input_scale(t)
        x = torch.cat([latents] * cond.rows).float()
        x = (x * scale if scale != 1.0 else x).to(dtype)
        added = {k: v.to(dtype) if v.is_floating_point() else v for k, v in added.items()}
        out = self.family.forward(self.denoiser, x, t, embeds.to(dtype), added).float()
        if cond.rows == 1:
            return out, out
        uncond, text = out.chunk(2)
        return uncond, text

    def guide(self, uncond: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Classifier-free guidance: uncond + g · (text − uncond) (``text`` itself when both are one output)."""
        if uncond is text:
            return text
        return uncond + self.cfg_scale * (text - uncond)

    def unet_output(self, latents: torch.Tensor, t, cond: Conditioning) -> torch.Tensor:
        """One batched guided denoiser evaluation of ``latents`` [N, C, h, w] at timestep ``t``.

        Returns the guided model output (float32, in the scheduler's ``prediction_type``):
        out_uncond + g · (out_text − out_uncond). Gradients flow if enabled by the caller.
        """
        return self.guide(*self.unet_halves(latents, t, cond))

    def eps_and_x0(self, output: torch.Tensor, latents: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise prediction and x0-prediction (float32) from a model output of any ``prediction_type``, for latents
        on the scheduler's scale (see :meth:`noise_level`; for sigma-space schedulers x0 = x − σ·ε; for flow matching,
        velocity v = ε − x0: x0 = z − σ·v, ε = z + (1−σ)·v)."""
        if is_flow_matching(self.scheduler):
            sigma = float(t) / self.scheduler.config.num_train_timesteps
            z, v = latents.float(), output.float()
            return z + (1 - sigma) * v, z - sigma * v
        c, a = self.noise_level(t)
        z, output = latents.float() * c, output.float()
        sa, sb = math.sqrt(a), math.sqrt(1 - a)
        kind = self.scheduler.config.prediction_type
        if kind == "epsilon":
            eps = output
            x0 = (z - sb * eps) / sa
        elif kind == "v_prediction":
            x0 = sa * z - sb * output
            eps = sa * output + sb * z
        else:  # "sample"
            x0 = output
            eps = (z - sa * x0) / sb
        return eps, x0

    def _step(self, scheduler, t, seed, output: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """``scheduler.step`` in float32; step noise from ``seed``, identical for every row of the batch."""
        params, kwargs = step_parameters(scheduler), {}
        if "generator" in params:
            kwargs["generator"] = [torch.Generator().manual_seed(int(seed)) for _ in range(latents.shape[0])]
        if "eta" in params:
            kwargs["eta"] = self.eta
        return scheduler.step(output.float(), t, latents.float(), return_dict=False, **kwargs)[0]

    def step(self, trajectory: Trajectory, i: int, output: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """The scheduler step of row ``i`` applied to a batch: the solver state and step noise the trajectory had.

        ``output``/``latents`` are [N, C, h, w]; the trajectory's scheduler is not touched. A multistep or
        second-order solver keeps the trajectory's history (earlier outputs, the predictor's sample): only the
        evaluation at row ``i`` changes.
        """
        scheduler = batched_state(trajectory.scheduler_states[i], latents.shape[0])
        return self._step(scheduler, trajectory.timesteps[i], trajectory.noise_seeds[i], output, latents)

    def rollout(self, trajectory: Trajectory, i: int, latents: torch.Tensor, output: torch.Tensor | None = None):
        """Continue the trajectory's sampler from row ``i`` for a batch of (perturbed) z_t to final latents, with
        the trajectory's step noise.

        ``output`` optionally gives the already computed guided model output at row ``i``.
        """
        scheduler = batched_state(trajectory.scheduler_states[i], latents.shape[0])
        z = latents
        for j in range(i, trajectory.num_steps):
            t = trajectory.timesteps[j]
            out = output if (j == i and output is not None) else self.unet_output(z, t, trajectory.cond)
            z = self._step(scheduler, t, trajectory.noise_seeds[j], out, z)
        return z

    def _vae_input(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents → the VAE decoder's input in its dtype (unscaled, and un-normalised where the VAE has
        ``latents_mean``/``latents_std``)."""
        config = self.pipe.vae.config
        z = latents.float()
        mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
        if mean is not None and std is not None:
            shape = (1, -1, 1, 1)
            z = z * torch.tensor(std, device=z.device).view(shape) / config.scaling_factor \
                + torch.tensor(mean, device=z.device).view(shape)
        else:  # SD3 and Flux VAEs also shift their latents
            z = z / config.scaling_factor + (getattr(config, "shift_factor", None) or 0.0)
        return z.to(self.pipe.vae.dtype)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        """Latents [N, C, h, w] → images [N, 3, H, W] in [0, 1] (float32) through the VAE."""
        return torch.cat([self.decode_with_grad(chunk) for chunk in latents.split(batch_size)])

    def decode_with_grad(self, latents: torch.Tensor) -> torch.Tensor:
        """Like :meth:`decode` but differentiable (for gradient-based explainers)."""
        img = self.pipe.vae.decode(self._vae_input(latents), return_dict=False)[0]
        return (img.float() / 2 + 0.5).clamp(0, 1)

    def initial_latents(self, seed: int) -> torch.Tensor:
        """z_T (float32) for ``seed`` and the current schedule's ``init_noise_sigma``: drawn on the CPU so a seed
        gives the same noise on every device."""
        g = torch.Generator("cpu").manual_seed(int(seed))
        z = torch.randn((1, *self.latent_shape), generator=g, dtype=torch.float32)
        return (z * float(getattr(self.scheduler, "init_noise_sigma", 1.0))).to(self.device)

    # -- sampling ---------------------------------------------------------------------------------
    def apply_schedule(self, schedule: Schedule, scheduler=None) -> list[int | float]:
        """Set ``schedule`` on ``scheduler`` (this model's by default) with the arguments the family's own pipeline
        adds (Flux: its sigmas and resolution shift); returns the timesteps, one per denoiser evaluation."""
        scheduler = self.scheduler if scheduler is None else scheduler
        kwargs = self.family.schedule_kwargs(schedule.num_steps, self.latent_shape[1:])
        return schedule.apply(scheduler, device=self.device, **kwargs)

    @torch.no_grad()
    def generate(self, prompt: str, seed: int, schedule: Schedule, negative_prompt: str = "") -> Trajectory:
        """Sample once and keep every UNet evaluation's timestep, latent, guided ε and x0-prediction, the solver
        state before each step and the step noise seeds (see :class:`Trajectory`)."""
        cond = self.encode(prompt, negative_prompt)
        scheduler = self.scheduler
        self.apply_schedule(schedule, scheduler)
        timesteps = scheduler.timesteps.clone()
        seeds = noise_seeds(seed, len(timesteps))
        sigma_space = is_sigma_space(scheduler)
        one = torch.ones(1, device=self.device)
        z = self.initial_latents(seed)
        rows: dict[str, list] = {"latents": [z[0]], "outputs": [], "eps": [], "x0": [], "states": [], "scales": [],
                                 "alpha_bars": [], "stages": []}
        scales: dict[float, float] = {}
        for i, t in enumerate(timesteps):
            rows["stages"].append(0 if getattr(scheduler, "state_in_first_order", True) else 1)
            # also advances the sampler's own bookkeeping (flow-matching schedulers have no input scaling)
            scale = float(scheduler.scale_model_input(one, t)[0]) if hasattr(scheduler, "scale_model_input") else 1.0
            if sigma_space:
                self._input_scales[float(t)] = scales.setdefault(float(t), scale)
            level = self.noise_level(t)
            rows["states"].append(copy.deepcopy(scheduler))
            out = self.unet_output(z, t, cond)
            eps, x0 = self.eps_and_x0(out, z, t)
            z = self._step(scheduler, t, seeds[i], out, z)
            for key, value in (("latents", z), ("outputs", out), ("eps", eps), ("x0", x0)):
                rows[key].append(value[0])
            rows["scales"].append(level[0])
            rows["alpha_bars"].append(level[1])
        return Trajectory(prompt=prompt, negative_prompt=negative_prompt, seed=int(seed), timesteps=timesteps.cpu(),
                          latents=torch.stack(rows["latents"]), eps=torch.stack(rows["eps"]),
                          x0=torch.stack(rows["x0"]), cond=cond, scheduler_states=rows["states"], noise_seeds=seeds,
                          input_scales=torch.tensor(rows["scales"]), alpha_bars=torch.tensor(rows["alpha_bars"]),
                          stages=torch.tensor(rows["stages"]), outputs=torch.stack(rows["outputs"]))
