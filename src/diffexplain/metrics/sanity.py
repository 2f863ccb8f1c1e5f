"""Sanity check for saliency maps (Adebayo et al., 2018): cascading model-parameter randomisation.

The UNet's blocks are re-initialised one after another from the output side — ``conv_out`` (with
``conv_norm_out``), ``up_blocks.{n-1}`` … ``up_blocks.0``, ``mid_block``, ``down_blocks.{m-1}`` …
``down_blocks.0``, then ``conv_in_and_embeddings`` (``conv_in``, the time embedding, SDXL's added embeddings and
any other module left) — each stage keeping the earlier ones randomised; a transformer denoiser's (SD3, Flux, PixArt)
from ``proj_out`` through its blocks from the last to its ``embeddings``. A map that stays the same while the model
it claims to explain is destroyed does not explain the model: :func:`sanity_rho` (Spearman between the trained
model's map and the randomised model's) should fall well below 1, while an input-only map (an edge detector of
z_t) keeps ρ = 1.

Re-initialisation uses each module's own ``reset_parameters`` (PyTorch's default initialisation, which diffusers'
UNets keep: Kaiming-uniform convs and linears, norms at weight 1 and bias 0) on a float32 CPU copy, with the global
RNG seeded from (seed, module path) inside ``torch.random.fork_rng`` — the same weights on every device and dtype,
the caller's RNG untouched. Parameters held by modules without ``reset_parameters`` are drawn from N(0, σ²),
σ the trained parameter's standard deviation.

How alike two maps are (:func:`map_similarity`, ``evaluate.sanity_similarity``, as Quantus offers): ``spearman``
(the default), ``abs_spearman`` (of |maps|, as Adebayo et al. also report for signed maps) or ``ssim`` (SSIM between
the min-max normalised maps, Gaussian window σ 1.5). The verdict line (:data:`diffexplain.config.options.SANITY_LINE`,
ρ 0.3) was set for Spearman. A sampled map's ρ can never exceed its noise floor — the similarity between two
independent draws of the trained model's map — so the pipeline reports both.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from diffexplain.config.options import SANITY_SIMILARITIES
from diffexplain.errors import check
from diffexplain.metrics.correlation import spearman

REST = "conv_in_and_embeddings"  # the UNet's last stage; transformers' is EMBEDDINGS
EMBEDDINGS = "embeddings"
UNET_BLOCKS, TRANSFORMER_BLOCKS = ("up_blocks", "mid_block", "down_blocks"), ("single_transformer_blocks",
                                                                              "transformer_blocks")


def randomisation_stages(denoiser) -> list[tuple[str, list[str]]]:
    """``[(stage name, [module or parameter paths])]`` in cascade order for a diffusers UNet or transformer denoiser;
    together the stages hold every parameter once.

    UNets: ``conv_out`` (with ``conv_norm_out``), ``up_blocks`` from the last, ``mid_block``, ``down_blocks`` from the
    last, then ``conv_in_and_embeddings``. Transformers (SD3, Flux, PixArt): ``proj_out`` (with ``norm_out`` and the
    denoiser's own output parameters, PixArt's ``scale_shift_table``), the blocks from the last (Flux: the
    single-stream blocks, then the double-stream ones), then ``embeddings`` (patch/position embedding, timestep, text
    and pooled projections)."""
    children = {n: m for n, m in denoiser.named_children() if any(True for _ in m.parameters())}
    unet = "up_blocks" in children
    own = [n for n, _ in denoiser.named_parameters(recurse=False)]
    out = [n for n in (("conv_norm_out", "conv_out") if unet else ("norm_out", "proj_out")) if n in children]
    out += own
    stages = [("conv_out" if unet else "proj_out", out)] if out else []
    for name in UNET_BLOCKS if unet else TRANSFORMER_BLOCKS:
        if name not in children:
            continue
        if isinstance(children[name], torch.nn.ModuleList):
            stages += [(f"{name}.{k}", [f"{name}.{k}"]) for k in reversed(range(len(children[name])))]
        else:
            stages.append((name, [name]))
    used = {p for _, paths in stages for p in paths} | set(UNET_BLOCKS + TRANSFORMER_BLOCKS)
    rest = [n for n in children if n not in used]
    if rest:
        stages.append((REST if unet else EMBEDDINGS, rest))
    return stages


def _seed(seed: int, path: str) -> int:
    return int(hashlib.sha1(f"sanity|{seed}|{path}".encode()).hexdigest()[:15], 16)


@torch.no_grad()
def reinitialise(module: torch.nn.Module, seed: int) -> None:
    """Re-initialise ``module``'s parameters in place (see the module docstring), deterministically for ``seed``."""
    fresh = copy.deepcopy(module).to("cpu", torch.float32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in fresh.modules():
            if callable(getattr(m, "reset_parameters", None)):
                m.reset_parameters()
                continue
            for p in m.parameters(recurse=False):
                std = float(p.std()) if p.numel() > 1 else 0.0
                p.normal_(0.0, std if std > 0 and std == std else 0.02)
    for p, q in zip(module.parameters(), fresh.parameters()):
        p.copy_(q)


@torch.no_grad()
def _redraw(p: torch.nn.Parameter, seed: int) -> None:
    """Draw a parameter held by no module with ``reset_parameters`` from N(0, σ²), σ its trained standard deviation."""
    fresh = p.detach().to("cpu", torch.float32).clone()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        std = float(fresh.std()) if fresh.numel() > 1 else 0.0
        fresh.normal_(0.0, std if std > 0 and std == std else 0.02)
    p.copy_(fresh)


def cascading_randomisation(model, seed: int = 0) -> Iterator[tuple[str, object]]:
    """Yield ``(stage name, DiffusionModel)`` with the UNet randomised cumulatively up to that stage.

    One deep copy of the UNet is randomised stage by stage (the yielded model is ``model.with_denoiser(copy)``; the
    next stage changes the same copy, so use each model before advancing). ``model`` is never modified.
    """
    denoiser = copy.deepcopy(model.denoiser)
    own = dict(denoiser.named_parameters(recurse=False))
    for name, paths in randomisation_stages(denoiser):
        for path in paths:
            if path in own:  # a parameter of the denoiser itself (PixArt's scale_shift_table)
                _redraw(own[path], _seed(seed, path))
            else:
                reinitialise(denoiser.get_submodule(path), _seed(seed, path))
        yield name, model.with_denoiser(denoiser)


def sanity_rho(trained: torch.Tensor, randomised: torch.Tensor, absolute: bool = False) -> float:
    """Spearman ρ between the trained model's map and a randomised model's map (``absolute``: of |maps|, as
    Adebayo et al. also report for signed maps). Near 1: the map does not depend on what the model learned."""
    if absolute:
        trained, randomised = trained.abs(), randomised.abs()
    return spearman(trained, randomised)


def _unit(m: torch.Tensor) -> torch.Tensor | None:
    m = torch.as_tensor(m).detach().double().cpu()
    span = m.max() - m.min()
    return (m - m.min()) / span if span > 0 else None


def map_similarity(a, b, kind: str = "spearman") -> float:
    """How alike two maps [h, w] are: ``spearman``, ``abs_spearman`` or ``ssim`` of the min-max normalised maps (data
    range 1, Gaussian window σ 1.5 cut to the grid). NaN when a map is constant."""
    check(kind in SANITY_SIMILARITIES, "evaluate.sanity_similarity", kind, f"one of {list(SANITY_SIMILARITIES)}")
    if kind != "ssim":
        return sanity_rho(torch.as_tensor(a), torch.as_tensor(b), absolute=kind == "abs_spearman")
    a, b = _unit(a), _unit(b)
    if a is None or b is None:
        return float("nan")
    side = min(a.shape[-2:])
    size = min(11, side - 1 if side % 2 == 0 else side)
    return float(structural_similarity_index_measure(a[None, None], b[None, None], data_range=1.0,
                                                     kernel_size=size, sigma=1.5))
