"""Measure the trained Shapes pipeline (fidelity, speed, size) and write its model card and the classifier's."""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from diffusers import DiffusionPipeline

from diffexplain.io import atomic_path, write_json
from diffexplain.models import DiffusionModel, load_pipeline
from diffexplain.models.schedulers import swap_scheduler
from diffexplain.pipelines.world_training.fidelity import eval_set, generate_samples, judge, per_sample, rates
from diffexplain.world.classifier import load_classifier

log = logging.getLogger(__name__)
TIMING_PROMPT = "a red circle and a blue square"
RATES = ("colour", "shape", "both_present", "order", "exact")
COMPONENTS = ("vae", "text_encoder", "text_encoder_2", "text_encoder_3", "unet", "transformer")


def evaluate(model_dir: Path, classifier_dir: Path, cfg) -> dict:
    """Fidelity rates on ``cfg.samples`` samples (shipped guidance and steps, plus ``compare_guidance``), and the
    samples."""
    model = DiffusionModel(load_pipeline(str(model_dir)), guidance_scale=cfg.guidance_scale, scheduler=cfg.scheduler,
                           max_sequence_length=cfg.max_sequence_length)
    classifier = load_classifier(classifier_dir)
    prompts, seeds = map(list, zip(*eval_set(cfg.samples)))
    results = {}
    for g in (cfg.guidance_scale, *cfg.compare_guidance):
        model.guidance_scale = float(g)
        started = time.perf_counter()
        images = generate_samples(model, prompts, seeds, cfg.num_steps)
        table = judge(images, prompts, classifier)
        results[float(g)] = {**rates(table), "seconds": round(time.perf_counter() - started, 1)}
        log.info("fidelity, guidance %g, %d steps %s: %s", g, cfg.num_steps, cfg.scheduler,
                 ", ".join(f"{k} {results[float(g)][k]:.1%}" for k in RATES))
        if g == cfg.guidance_scale:
            shipped = images, table
    return {"fidelity": results[float(cfg.guidance_scale)], "guidance_sweep": results,
            "images": shipped[0], "table": shipped[1], "prompts": prompts}


def generation_seconds(model_dir: Path, cfg, repeats: int = 3) -> float:
    """Median seconds for one image with plain ``DiffusionPipeline.from_pretrained`` (after a warm-up call)."""
    pipe = DiffusionPipeline.from_pretrained(str(model_dir))
    swap_scheduler(pipe, cfg.scheduler)
    extra = {} if cfg.max_sequence_length is None else {"max_sequence_length": cfg.max_sequence_length}
    pipe.set_progress_bar_config(disable=True)
    times = []
    for i in range(repeats + 1):
        started = time.perf_counter()
        pipe(TIMING_PROMPT, num_inference_steps=cfg.num_steps, guidance_scale=cfg.guidance_scale,
             generator=torch.Generator().manual_seed(i), **extra)
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def dir_megabytes(path: Path) -> float:
    """Size of the files under ``path``, checkpoints excluded."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and "checkpoints" not in p.parts) / 2**20


def loss_figure(losses: dict[str, list], path: Path) -> None:
    """One panel per stage: per-step loss and its 50-step moving average, log scale."""
    fig, axes = plt.subplots(1, len(losses), figsize=(4 * len(losses), 3))
    for ax, (stage, history) in zip(np.atleast_1d(axes), losses.items()):
        steps, values = np.array(history, dtype=float).reshape(-1, 2).T
        ax.plot(steps, values, lw=0.5, alpha=0.4)
        if len(values) >= 50:
            ax.plot(steps[49:], np.convolve(values, np.ones(50) / 50, "valid"), lw=1.5)
        ax.set(title=stage, xlabel="step", yscale="log")
    axes = np.atleast_1d(axes)
    axes[0].set_ylabel("training loss")
    _save(fig, path)


def sample_grid(images: np.ndarray, prompts: list[str], exact: list[bool], path: Path, cols: int = 8) -> None:
    """Images with their prompts; titles green when judged exact, red otherwise."""
    rows = -(-len(images) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, image, prompt, ok in zip(np.ravel(axes), images, prompts, exact):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(prompt.replace(" and ", "\nand "), fontsize=5.5, color="green" if ok else "red")
    _save(fig, path)


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def write_cards(model_dir: Path, classifier_dir: Path, summary: dict, cfg) -> dict:
    """Evaluate, draw the figures, write ``README.md`` + ``training.json`` in both model directories; return the
    numbers."""
    result = evaluate(model_dir, classifier_dir, cfg)
    samples = per_sample(result["table"])
    show = list(range(24)) + list(range(len(samples) // 2, len(samples) // 2 + 24))
    show = [i for i in show if i < len(samples)]
    sample_grid(result["images"][show], [result["prompts"][i] for i in show], samples.exact.iloc[show].tolist(),
                model_dir / "samples.png")
    loss_figure(summary["losses"], model_dir / "loss_curve.png")
    pipe = load_pipeline(str(model_dir))
    params = {name: sum(p.numel() for p in getattr(pipe, name).parameters()) for name in COMPONENTS
              if getattr(pipe, name, None) is not None}
    measured = {"fidelity": result["fidelity"], "guidance_sweep": result["guidance_sweep"], "params": params,
                "generation_seconds": round(generation_seconds(model_dir, cfg), 3)}
    if "classifier" in summary["stages"]:  # the UNet world's job trains the judge too
        _write_text(classifier_dir / "README.md", classifier_card(summary))
    measured["megabytes"] = {model_dir.name: round(dir_megabytes(model_dir), 2),
                             "shapes-classifier": round(dir_megabytes(classifier_dir), 2)}
    card = model_card if "unet" in params else mmdit_card
    _write_text(model_dir / "README.md", card({**summary, **measured}, cfg, pipe, model_dir.name))
    write_json(model_dir / "training.json", {**{k: v for k, v in summary.items() if k != "losses"}, **measured})
    result["table"].to_csv(model_dir / "fidelity_samples.csv", index=False)
    log.info("generation: %.2f s per image (%d steps, CPU); sizes: %s", measured["generation_seconds"],
             cfg.num_steps, measured["megabytes"])
    return measured


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def classifier_card(summary: dict) -> str:
    c, s = summary["config"]["classifier"], summary["stages"]["classifier"]
    return f"""# shapes-classifier

A small CNN (`diffexplain.world.classifier.ShapesClassifier`, channels {c["channels"]}) that names the colour and
shape (12 classes: 4 colours × 3 shapes) of a 32×32 single-object Shapes scene in [0, 1].

- Data: {c["scenes"]} rendered single-object scenes (object size 6–16 px), augmented with brightness 0.6–1,
  3×3 blur (30 %) and Gaussian noise σ ≤ 0.08; seed {summary["seed"] + 1}.
- Training: {s["steps"]} steps, batch {c["batch_size"]}, AdamW lr {c["lr"]}, {s["seconds"]:.0f} s on the CPU;
  final loss {s["final_loss"]:.4f}.
- **Held-out accuracy: {_pct(s["held_out_accuracy"])}** on {c["held_out"]} fresh rendered scenes.
- Uses: the shape judge of `diffexplain.pipelines.world_training.fidelity` and the feature network of single-image FID
  (`features(x)`: the 16×16 conv features; `diffexplain.world.classifier.classifier_features(path)`).

Load: `diffexplain.world.classifier.load_classifier("models/shapes-classifier")`. Retrain:
`python run.py pipeline=train_world` (or `make world`).
"""


def _training_extras(d: dict, networks: str = "text encoder and UNet") -> str:
    """The sentences on the denoiser's weight averaging and grounding loss, if any."""
    out = ""
    if d.get("ema_decay") is not None:
        out += (f" The saved {networks} are an exponential moving average of the weights (decay"
                f" {d['ema_decay']:g}, from step {d['ema_start']}).")
    if d.get("grounding_loss"):
        out += (f" **Grounded cross-attention**: the loss adds {d['grounding_loss']:g} × TokenCompose's token loss,"
                " which pulls each object's colour and shape tokens' cross-attention into the object's mask, so"
                " cross-attention maps of this model localise its objects *by training*; do not read their"
                " localisation scores as evidence about cross-attention in models trained without masks.")
    return out


def _config_name(model_dir_name: str) -> str:
    """The ``model=`` choice of a model directory: shapes-sd → shapes, shapes-sd-grounded → shapes_grounded."""
    return "shapes" + model_dir_name.removeprefix("shapes-sd").replace("-", "_")


def _job_name(model_dir_name: str) -> str:
    """The ``pipeline=`` job that trains a model directory: shapes-sd → train_world (also ``make world``)."""
    return "train_world" + model_dir_name.removeprefix("shapes-sd").replace("-", "_")


def _role(model_dir_name: str) -> str:
    if model_dir_name == "shapes-sd":
        return "It is diffexplain's default model (`model=shapes`)."
    return f"Load it in diffexplain with `model={_config_name(model_dir_name)}`."


def model_card(s: dict, cfg, pipe, name: str = "shapes-sd") -> str:
    v, d, st = s["config"]["vae"], s["config"]["denoiser"], s["stages"]
    p = s["params"]
    unet = pipe.unet.config
    return f"""---
library_name: diffusers
pipeline_tag: text-to-image
tags: [stable-diffusion, synthetic, diffexplain]
---
# {name}: a tiny Stable Diffusion for the Shapes world

A real latent diffusion model, a plain diffusers `StableDiffusionPipeline` (AutoencoderKL, CLIPTextModel with a
CLIP BPE tokenizer, UNet2DConditionModel with cross-attention, DDIM scheduler), trained from scratch on a CPU on
synthetic 32×32 scenes whose every object is known. {_role(name)}

![samples](samples.png)

## Use

```python
from diffusers import StableDiffusionPipeline, DPMSolverMultistepScheduler
pipe = StableDiffusionPipeline.from_pretrained("models/{name}")
pipe.scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)  # as shipped in \
model={_config_name(name)}
image = pipe("a red circle and a blue square", num_inference_steps={cfg.num_steps},
             guidance_scale={cfg.guidance_scale:g}).images[0]  # 32x32 PIL image
```

In diffexplain: `python run.py model={_config_name(name)}`: `{cfg.scheduler}` scheduler, `schedule=uniform`
with {cfg.num_steps} steps, guidance scale {cfg.guidance_scale:g}. One image takes
**{s["generation_seconds"]:.2f} s** on this CPU (2 cores, plain pipeline, {cfg.num_steps} steps, median of 3).

## Data

Prompts of the grammar {s["grammar"]}. Scenes are 32×32 RGB on black, objects 8–14 px, ≥ 2 px apart, the first
named object on the left; one or two objects (50/50). {s["scenes"]} scenes rendered once from seed {s["seed"]}.

## Architecture ({sum(p.values()) / 1e6:.2f} M parameters)

| component | parameters | configuration |
|---|---|---|
| VAE (AutoencoderKL) | {p["vae"]:,} | 32×32×3 → 16×16×4, blocks {v["block_out_channels"]}, 1 layer per block, \
no attention; scaling factor {s["scaling_factor"]:.4f} (1 / std of the training latents) |
| text encoder (CLIPTextModel) | {p["text_encoder"]:,} | hidden {d["text_hidden"]}, {d["text_layers"]} layers, \
{d["text_heads"]} heads, {pipe.tokenizer.model_max_length} tokens, vocabulary {len(pipe.tokenizer)} \
(every grammar word one token) |
| UNet (UNet2DConditionModel) | {p["unet"]:,} | 16×16×4 latents, blocks {list(unet.block_out_channels)}, \
{", ".join(unet.down_block_types)} (cross-attention at \
{", ".join(f"{16 // 2**i}×{16 // 2**i}" for i in range(len(unet.block_out_channels)))}) + mid block at \
{16 // 2 ** (len(unet.block_out_channels) - 1)}×{16 // 2 ** (len(unet.block_out_channels) - 1)}; \
cross-attention dim {unet.cross_attention_dim}, {unet.attention_head_dim} heads |

## Training (seed {s["seed"]}, {s["wall_seconds"] / 60:.1f} min wall-clock for data and training, CPU)

| stage | steps | batch | lr | time | final loss (mean of the last 50 steps) |
|---|---|---|---|---|---|
| VAE: MSE + {v["kl_weight"]:g}·KL | {st["vae"]["steps"]} | {v["batch_size"]} | {v["lr"]:g} | \
{st["vae"]["seconds"]:.0f} s | {st["vae"]["final_loss"]:.5f} \
(reconstruction MSE in [-1, 1]: {st["vae"]["recon_mse"]:.5f}) |
| classifier (cross-entropy) | {st["classifier"]["steps"]} | {s["config"]["classifier"]["batch_size"]} | \
{s["config"]["classifier"]["lr"]:g} | {st["classifier"]["seconds"]:.0f} s | {st["classifier"]["final_loss"]:.4f} \
(held-out accuracy {_pct(st["classifier"]["held_out_accuracy"])}) |
| text encoder + UNet: {d["prediction_type"]} MSE, DDPM scaled-linear 0.00085–0.012, 1000 steps, \
{d["p_uncond"]:.0%} empty prompts | {st["denoiser"]["steps"]} | {d["batch_size"]} | {d["lr"]:g} | \
{st["denoiser"]["seconds"]:.0f} s | {st["denoiser"]["final_loss"]:.4f} |

AdamW (weight decay 0.01), linear warm-up then cosine decay to 10 %.{_training_extras(d)} \
Lightning, checkpoints every few
hundred steps, resumable: \
`python run.py pipeline={_job_name(name)}`{" (or `make world`)" if name == "shapes-sd" else ""}.

![loss curve](loss_curve.png)

{_fidelity_section(s, cfg, st, name)}"""


def _fidelity_section(s: dict, cfg, st: dict, name: str) -> str:
    f = s["fidelity"]
    sweep = "\n".join(f"| {g:g} | {_pct(r['colour'])} | {_pct(r['shape'])} | {_pct(r['both_present'])} | "
                      f"{_pct(r['order'])} | {_pct(r['exact'])} |" for g, r in sorted(s["guidance_sweep"].items()))
    accuracy = st["classifier"]["held_out_accuracy"] if "classifier" in st else s.get("classifier_accuracy",
                                                                                    float("nan"))
    return f"""## Fidelity ({f["samples"]} samples: {f["samples"] // 2} one-object, \
{f["samples"] - f["samples"] // 2} two-object)

Sample i uses seed i; the one-object samples cycle through the 12 one-object prompts, the two-object samples
through the 72 two-object prompts. `{cfg.scheduler or "the shipped sampler"}`, {cfg.num_steps} steps, guidance \
{cfg.guidance_scale:g}:

| measure | rate |
|---|---|
| colour right (per prompted object, {f["objects"]} objects) | **{_pct(f["colour"])}** |
| shape right (per prompted object) | **{_pct(f["shape"])}** |
| both objects present (two-object prompts) | **{_pct(f["both_present"])}** |
| both present and the first named on the left | {_pct(f["order"])} |
| exact (every object right, order right, nothing else) | {_pct(f["exact"])} |

How judged (`diffexplain.pipelines.world_training.fidelity`): every pixel takes the nearest of \
black and the four colours;
an object's colour is right when a connected blob of its colour with ≥ 10 pixels exists
(`detect_objects`); its shape is right when, in addition, the shapes classifier (`models/shapes-classifier`,
held-out accuracy {_pct(accuracy)} on drawn scenes) gives that shape to the largest
blob of that colour isolated on black. The sample grid above marks samples judged exact in green.

Guidance scale ({f["samples"]} samples each):

| guidance | colour | shape | both present | order | exact |
|---|---|---|---|---|---|
{sweep}

Size on disk (without this card): {s["megabytes"][name]:.1f} MB (pipeline and figures) + \
{s["megabytes"]["shapes-classifier"]:.2f} MB (classifier).
"""


def mmdit_card(s: dict, cfg, pipe, name: str = "shapes-mmdit") -> str:
    d, st, p = s["config"]["denoiser"], s["stages"], s["params"]
    t = pipe.transformer.config
    side = t.sample_size // t.patch_size
    return f"""---
library_name: diffusers
pipeline_tag: text-to-image
tags: [stable-diffusion-3, mmdit, flow-matching, synthetic, diffexplain]
---
# {name}: a tiny SD3-style diffusion transformer for the Shapes world

A real rectified-flow diffusion transformer, a plain diffusers `StableDiffusion3Pipeline` (the Shapes world's
AutoencoderKL, two CLIP text encoders with projections, an `SD3Transformer2DModel` with joint attention,
`FlowMatchEulerDiscreteScheduler`), trained from scratch on a CPU on the synthetic 32×32 scenes whose every object is
known — the same scenes, VAE and judge as the UNet world `shapes-sd`, so every trust number can be compared across
the two architectures. Load it in diffexplain with `model=shapes_mmdit`.

![samples](samples.png)

## Use

```python
from diffusers import StableDiffusion3Pipeline
pipe = StableDiffusion3Pipeline.from_pretrained("models/{name}")
image = pipe("a red circle and a blue square", num_inference_steps={cfg.num_steps}, \
guidance_scale={cfg.guidance_scale:g},
             max_sequence_length={d["max_sequence_length"]}).images[0]  # 32x32 PIL image; T5 length as trained
```

In diffexplain: `python run.py model=shapes_mmdit`: the shipped flow-matching Euler sampler, `schedule=uniform` with
{cfg.num_steps} steps, guidance scale {cfg.guidance_scale:g}. One image takes **{s["generation_seconds"]:.2f} s** on
this CPU (2 cores, plain pipeline, {cfg.num_steps} steps, median of 3).

## Data

Prompts of the grammar {s["grammar"]}; {s["scenes"]} scenes rendered once from seed {s["seed"]} (the UNet world's).

## Architecture ({sum(p.values()) / 1e6:.2f} M parameters)

| component | parameters | configuration |
|---|---|---|
| VAE (AutoencoderKL) | {p["vae"]:,} | the UNet world's (`models/shapes-sd/vae`): 32×32×3 → 16×16×4, scaling \
factor {s["scaling_factor"]:.4f} |
| text encoders (2 × CLIPTextModelWithProjection) | {p["text_encoder"] + p["text_encoder_2"]:,} | hidden \
{d["text_hidden"]}, {d["text_layers"]} layers, {d["text_heads"]} heads each, the world's CLIP tokenizer \
({pipe.tokenizer.model_max_length} tokens); SD3 concatenates their penultimate states and pools their projections |
| T5 encoder (T5EncoderModel) | {p["text_encoder_3"]:,} | one layer, final norm zero: its states are exactly \
zero (SD3 "without T5"), {d["max_sequence_length"]} tokens of the project's T5-style grammar tokenizer; never trained |
| transformer (SD3Transformer2DModel) | {p["transformer"]:,} | {t.num_layers} joint blocks, \
{t.num_attention_heads} heads × {t.attention_head_dim}, patch {t.patch_size}: {side}×{side} image tokens + \
{pipe.tokenizer.model_max_length + d["max_sequence_length"]} text tokens in every joint attention; joint attention \
dim {t.joint_attention_dim} |

## Training (seed {s["seed"]}, {s["wall_seconds"] / 60:.1f} min wall-clock for data and training, CPU)

Rectified flow: z_σ = (1−σ)·x0 + σ·ε, the transformer predicts v = ε − x0 (MSE), σ logit-normal(0, 1) with shift \
{d["shift"]:g}, {d["p_uncond"]:.0%} empty prompts; {st["mmdit"]["steps"]} steps, batch {d["batch_size"]}, AdamW lr \
{d["lr"]:g} (warm-up, cosine to 10 %), {st["mmdit"]["seconds"]:.0f} s; final loss {st["mmdit"]["final_loss"]:.4f}. \
{_training_extras(d, "text encoders and transformer").strip()} Resumable: \
`python run.py pipeline=train_world_mmdit`.

![loss curve](loss_curve.png)

{_fidelity_section(s, cfg, st, name)}"""
