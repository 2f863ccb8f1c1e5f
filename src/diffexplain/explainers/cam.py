"""``explainer=cam``: DF-CAM — Grad-CAM on denoiser modules at one denoising step (Park et al., 2024).

One forward with gradients at (z_t, t) with forward hooks on the chosen modules, one ``autograd.grad`` of the
target for all of them. Guidance is applied exactly once: the activations A of both guidance halves are combined
with the guidance formula (u + g·(c − u)); the gradients G of the two halves are summed, because the target is
already a function of the guided output (this equals the authors' guidance-combined gradients of the raw output
summed over both halves). w_c = spatial mean of G_c; map = ReLU(Σ_c w_c A_c). Each module's map is upsampled
bilinearly and min-max normalised; the explanation is the sum over modules (the authors re-run their pipeline per
module — one pass gives the same maps). ``explainer.upsample``: ``latent`` upsamples to the latent grid and
returns the sum (range [0, #modules]); ``image`` (the default, the authors' path, which beat random more often in
the evaluation): upsample to the image size, sum, min-max again and nearest-resize to the latent grid.

Modules (``explainer.modules``): name patterns over ``unet.named_modules()`` (``*`` = one dotted segment) and/or the
shorthands ``resnets`` (every resnet) and ``paper`` (the authors' set, resolved for any diffusers UNet:
every down/up-block resnet, attention (``Transformer2DModel``) and down/upsampler, and the mid block's resnets but
not its attention — 43 modules on SD 1.x: 22 resnets + 15 attentions + 6 samplers; 16 on the embedded Shapes model).
The default ``auto`` is ``paper`` on UNets and, on transformers, the first half of the blocks in forward order (on
``shapes_mmdit`` it localised the objects better and won the games more often than every block or the second
half). On transformer denoisers (SD3, Flux, PixArt) ``paper`` is every block's image-stream output
(:data:`~diffexplain.config.options.CAM_TRANSFORMER_RULES`; Flux: its double- and single-stream blocks), the image
tokens [B, h'·w', C] reshaped to their grid (Flux's 2×2 patches: h/2 × w/2). Any module with a spatial output can be
hooked; :meth:`DFCAM.describe` lists the resolved names for ``run.json``.

Targets: ``noise_sum`` (the paper's: the guided model output summed; for ε- and v-prediction models the same map as
the guided noise prediction summed, which differs by a positive factor) or ``similarity``: the configured
similarity of the step's x0-prediction to the trajectory's final latent (decoded for image similarities). The
similarity to the *unperturbed* outcome itself is not offered: at the unperturbed input it sits at its maximum,
so its gradient — all Grad-CAM uses — vanishes.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from diffexplain.config.options import CAM_AUTO, CAM_MODULE_SETS, module_matches, module_patterns
from diffexplain.config.options import CAM_UPSAMPLE as UPSAMPLE
from diffexplain.errors import check
from diffexplain.explainers.base import Explainer, check_in
from diffexplain.explainers.gradient_targets import check_target, step_target
from diffexplain.models.attention_capture import grid_shape, on_grid
from diffexplain.models.denoisers import output_tensor

MODULE_SETS = CAM_MODULE_SETS
RESNETS, PAPER = MODULE_SETS["resnets"], MODULE_SETS["paper"]


def as_grid(name: str, x: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    """A module output as a feature map [B, C, h', w']: as is, or from a token sequence [B, h'·w', C]."""
    if x.ndim == 3 and math.prod(grid_shape(x.shape[1], latent_hw)) == x.shape[1]:
        return on_grid(x, latent_hw)
    check(x.ndim == 4, "explainer.modules", name,
          f"modules with a spatial output ([B, C, h, w] or [B, h·w, C] tokens); this one gives {list(x.shape)}")
    return x


def first_half_of_blocks(denoiser) -> list[str]:
    """A transformer's blocks in forward order (Flux: double-stream, then single-stream), the first half of them."""
    blocks = [f"{name}.{i}" for name in ("transformer_blocks", "single_transformer_blocks")
              for i in range(len(getattr(denoiser, name, ())))]
    return blocks[: max(1, len(blocks) // 2)]


def resolve_modules(denoiser, modules: str | list[str] | tuple, family: str = "unet") -> list[str]:
    """Names of the denoiser's modules matching ``modules``: name patterns and/or the shorthands ``resnets`` (UNets),
    ``paper`` (the authors' set on UNets, every block on transformers) and ``auto`` (the default: ``paper`` on UNets,
    the first half of the blocks on transformers)."""
    listed = [modules] if isinstance(modules, str) else list(modules)
    if family != "unet" and CAM_AUTO in listed:
        listed = [m for m in listed if m != CAM_AUTO] + first_half_of_blocks(denoiser)
    patterns = module_patterns(listed, family)
    names = [n for n, _ in denoiser.named_modules() if n and any(module_matches(n, p) for p in patterns)]
    examples = "'up_blocks.*.resnets.*' or 'mid_block.resnets.0'" if family == "unet" else "'transformer_blocks.*'"
    check(bool(names), "explainer.modules", modules,
          f"'paper'{', ' + repr('resnets') if family == 'unet' else ''} or name patterns matching {family} "
          f"denoiser modules, e.g. {examples}")
    return names


@contextmanager
def forward_hooks(modules: dict, store: dict, select=output_tensor):
    """Keep the tensor each module outputs (``select``: :func:`output_tensor`, or a transformer block's image
    stream) in ``store[name]``; the hooks are removed on exit, also on error."""

    def keep(name, output):
        tensor = select(output)
        if tensor is not None:
            store[name] = tensor

    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(lambda m, args, out, name=name: keep(name, out)))
        yield store
    finally:
        for h in handles:
            h.remove()


def minmax(x: torch.Tensor) -> torch.Tensor:
    lo, hi = x.min(), x.max()
    return (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)


class DFCAM(Explainer):
    name = "cam"
    uses_similarity = classmethod(lambda cls, config: config.get("target") == "similarity")  # see Explainer

    def __init__(self, model, similarity=None, modules: str | list[str] | tuple = CAM_AUTO,
                 target: str = "noise_sum", upsample: str = "image", steps=None, seed: int = 0):
        super().__init__(model, similarity, steps, seed)
        check_target(target, similarity)
        check_in("explainer.upsample", upsample, UPSAMPLE)
        self.module_names = resolve_modules(model.denoiser, modules, model.family.family)
        self.target, self.upsample = target, upsample

    def describe(self) -> dict:
        return {"modules": self.module_names, "target": self.target, "upsample": self.upsample}

    def cam_inputs(self, trajectory, i: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per hooked module at step ``i``: (A, G), activations and gradients with guidance applied once.

        The target is a function of the guided output, so its gradient already carries the guidance weights:
        G = G_u + G_c = (1 − g)·∂Σu/∂A_u + g·∂Σc/∂A_c — the authors' guidance-combined gradient of the raw output
        summed over both halves. Activations are combined with the guidance formula.
        """
        modules = dict(self.model.denoiser.named_modules())
        acts: dict[str, torch.Tensor] = {}
        select = self.model.family.image_stream
        with forward_hooks({n: modules[n] for n in self.module_names}, acts, select), torch.enable_grad():
            z = trajectory.latents[i: i + 1].detach().to(self.model.device, self.model.dtype).requires_grad_(True)
            out = self.model.guide(*self.model.unet_halves(z, trajectory.timesteps[i], trajectory.cond))
            target = step_target(self.model, self.similarity, self.target, out, z, trajectory, i)
            names = [n for n in self.module_names if n in acts]
            for n in names:  # refuse a module without a spatial output before the backward
                as_grid(n, acts[n], z.shape[-2:])
            grads = torch.autograd.grad(target, [acts[n] for n in names], allow_unused=True)
        inputs = {}
        for name, grad in zip(names, grads):
            a = as_grid(name, acts[name].detach().float(), z.shape[-2:])
            g = torch.zeros_like(a) if grad is None else as_grid(name, grad.float(), z.shape[-2:])
            if trajectory.cond.rows == 1:  # no unconditional half (Flux.1 without true CFG)
                inputs[name] = (a, g)
                continue
            g_uncond, g_text = g.chunk(2)
            inputs[name] = (self.model.guide(*a.chunk(2)), g_uncond + g_text)
        return inputs

    def module_maps(self, trajectory, i: int) -> dict[str, torch.Tensor]:
        """Min-max normalised Grad-CAM map of every hooked module at step ``i``, bilinearly upsampled to the latent
        grid [h, w] (``upsample=latent``) or the image [H, W] (``upsample=image``)."""
        size = tuple(trajectory.latents.shape[-2:])
        if self.upsample == "image":
            size = tuple(s * self.model.vae_scale for s in size)
        maps = {}
        for name, (a, g) in self.cam_inputs(trajectory, i).items():
            cam = F.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1, keepdim=True))
            cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[0, 0]
            maps[name] = minmax(cam).cpu()
        return maps

    def explain_step(self, trajectory, i: int) -> torch.Tensor:
        total = torch.stack(list(self.module_maps(trajectory, i).values())).sum(0)
        if self.upsample == "latent":
            return total
        latent_hw = tuple(trajectory.latents.shape[-2:])
        return F.interpolate(minmax(total)[None, None], size=latent_hw, mode="nearest")[0, 0]
