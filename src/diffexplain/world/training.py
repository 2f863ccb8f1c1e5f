"""``pipeline=train_world``: train the Shapes world's Stable Diffusion pipeline and its judge, offline on a CPU.

Three Lightning stages, each checkpointed to ``<model_dir>/checkpoints/<stage>/last.ckpt`` and resumed from there:

1. ``vae``: an AutoencoderKL 32×32×3 → 16×16×4 on rendered scenes (MSE + a small KL term); its
   ``scaling_factor`` is then set to 1 / std of the training latents.
2. ``classifier``: the :class:`ShapesClassifier` (colour × shape of single-object scenes).
3. ``denoiser``: a CLIPTextModel and a UNet2DConditionModel (cross-attention at every level: 16×16 and 8×8 for
   two levels) trained jointly on the latents, v-prediction, with empty prompts for classifier-free guidance;
   optionally (``grounding_loss``, used by ``pipeline=train_world_grounded``) with a loss that pulls each object's
   colour and shape tokens' cross-attention into the object's mask.

The result is saved with ``save_pretrained`` as a plain ``StableDiffusionPipeline`` (DDIM scheduler), judged on
generated samples (:mod:`diffexplain.world.fidelity`) and described in a model card (``README.md``).
"""

from __future__ import annotations

import logging
import math
import shutil
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import diffusers
import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import transformers
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint, TQDMProgressBar
from torch.utils.data import DataLoader, RandomSampler, TensorDataset
from transformers import CLIPTextConfig, CLIPTextModel

from diffexplain.errors import UserError, check
from diffexplain.explainers.attention_capture import CrossAttentionRecorder
from diffexplain.io import write_json
from diffexplain.world.classifier import ShapesClassifier, label_of
from diffexplain.world.scenes import GRAMMAR, sample_scene
from diffexplain.world.tokenizer import load_tokenizer

log = logging.getLogger(__name__)
NOISE = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "num_train_timesteps": 1000}
STAGES = ("vae", "classifier", "denoiser")


@dataclass
class VaeConfig:
    steps: int = 800
    batch_size: int = 32
    lr: float = 2e-3
    block_out_channels: tuple[int, ...] = (32, 32)
    norm_num_groups: int = 8
    kl_weight: float = 1e-6


@dataclass
class ClassifierConfig:
    steps: int = 400
    batch_size: int = 128
    lr: float = 2e-3
    channels: tuple[int, int, int] = (32, 32, 64)
    scenes: int = 12000
    held_out: int = 1200


@dataclass
class DenoiserConfig:
    steps: int = 2800
    batch_size: int = 64
    lr: float = 2e-3
    block_out_channels: tuple[int, ...] = (32, 64)
    attention_heads: int = 4
    norm_num_groups: int = 8
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    p_uncond: float = 0.1
    prediction_type: str = "v_prediction"
    ema_decay: float | None = 0.998  # exponential moving average of the weights, the one saved; None = last weights
    ema_start: int = 1000            # first step averaged (the average starts as a copy of the weights then)
    grounding_loss: float = 0.0      # weight of a cross-attention grounding loss on the object masks; 0 = none


@dataclass
class EvalConfig:
    samples: int = 200
    num_steps: int = 20
    guidance_scale: float = 5.0
    scheduler: str = "dpm_solver"
    compare_guidance: tuple[float, ...] = ()


def _config(cls, value: dict | None, key: str):
    try:
        return cls(**(value or {}))
    except TypeError as e:
        raise UserError(f"pipeline.{key}", value, f"keys of {', '.join(cls.__dataclass_fields__)}") from e


# -- data -------------------------------------------------------------------------------------------------------
def render_scenes(n: int, seed: int, n_objects: int | None = None, **render_kw) -> tuple[torch.Tensor, list]:
    """``n`` scenes from a seeded rng: uint8 images [n, 3, 32, 32] (the colours are exactly 0/255) and the scenes."""
    rng = np.random.default_rng(seed)
    scenes = [sample_scene(rng, n_objects, **render_kw) for _ in range(n)]
    images = np.stack([s.image for s in scenes]).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.round(images * 255).astype(np.uint8)), scenes


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 → float in [0, 1]."""
    return images.float() / 255


def object_masks(scenes: list) -> torch.Tensor:
    """uint8 [N, 2, H, W]: the mask of each scene's first and second prompted object (zeros when there is none)."""
    h, w = scenes[0].objects[0].mask.shape
    out = np.zeros((len(scenes), 2, h, w), np.uint8)
    for i, scene in enumerate(scenes):
        for k, obj in enumerate(scene.objects):
            out[i, k] = obj.mask
    return torch.from_numpy(out)


def tokenize(tokenizer, prompts: list[str]) -> torch.Tensor:
    """Token ids [N, L] padded to the tokenizer's length, exactly as ``StableDiffusionPipeline.encode_prompt`` does."""
    return tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


# -- Lightning modules ------------------------------------------------------------------------------------------
class StageModule(L.LightningModule):
    """Base of the stages: AdamW with warm-up and cosine decay to 10 %, loss history and wall time in checkpoints."""

    def __init__(self, lr: float, steps: int):
        super().__init__()
        self.lr, self.steps = lr, steps
        self.losses: list[tuple[int, float]] = []
        self.seconds, self._started = 0.0, 0.0

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=0.01)
        warmup = max(1, min(100, self.steps // 10))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, self.steps - warmup))))

        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, factor),
                                                   "interval": "step"}}

    def record(self, loss: torch.Tensor) -> torch.Tensor:
        self.losses.append((self.global_step + 1, loss.item()))
        self.log("loss", loss, prog_bar=True)
        return loss

    def elapsed(self) -> float:
        return self.seconds + (time.perf_counter() - self._started if self._started else 0.0)

    def on_train_start(self) -> None:
        self._started = time.perf_counter()

    def on_train_end(self) -> None:
        self.seconds, self._started = self.elapsed(), 0.0

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["stage"] = {"losses": self.losses, "seconds": self.elapsed()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.losses, self.seconds = [tuple(x) for x in checkpoint["stage"]["losses"]], checkpoint["stage"]["seconds"]


class VaeModule(StageModule):
    """AutoencoderKL 32×32 → 16×16×4 (one downsampling per extra block)."""

    def __init__(self, cfg: VaeConfig):
        super().__init__(cfg.lr, cfg.steps)
        self.kl_weight = cfg.kl_weight
        n = len(cfg.block_out_channels)
        self.vae = AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=cfg.norm_num_groups,
            block_out_channels=tuple(cfg.block_out_channels), down_block_types=("DownEncoderBlock2D",) * n,
            up_block_types=("UpDecoderBlock2D",) * n, sample_size=32, mid_block_add_attention=False)

    def training_step(self, batch, _):
        x = to_unit(batch[0]) * 2 - 1
        posterior = self.vae.encode(x).latent_dist
        recon = self.vae.decode(posterior.sample()).sample
        return self.record(F.mse_loss(recon, x) + self.kl_weight * posterior.kl().mean())


class ClassifierModule(StageModule):
    """Cross-entropy on single-object scenes with brightness, blur and noise augmentation (generated samples are imperfect)."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__(cfg.lr, cfg.steps)
        self.classifier = ShapesClassifier(tuple(cfg.channels))

    def training_step(self, batch, _):
        x, y = to_unit(batch[0]), batch[1]
        b = len(x)
        x = x * torch.empty(b, 1, 1, 1, device=x.device).uniform_(0.6, 1.0)
        blurred = F.avg_pool2d(x, 3, 1, 1)
        x = torch.where(torch.rand(b, 1, 1, 1, device=x.device) < 0.3, blurred, x)
        x = (x + torch.randn_like(x) * torch.empty(b, 1, 1, 1, device=x.device).uniform_(0, 0.08)).clamp(0, 1)
        return self.record(F.cross_entropy(self.classifier(x), y))


class DenoiserModule(StageModule):
    """CLIPTextModel + UNet2DConditionModel on scaled latents; ``p_uncond`` of the prompts replaced by "".

    v-prediction (the default) weights the x0 error by SNR + 1 instead of ε-prediction's SNR, so the noisy steps
    that decide which objects appear and where get a real share of the loss. Measured here (200 judged samples):
    800 steps of v-prediction with EMA got colour 92 %, shape 55 %, both objects 77 %; 2000 steps of
    Min-SNR-5-weighted ε-prediction without EMA got 84 %, 50 %, 66 %.
    """

    def __init__(self, cfg: DenoiserConfig, tokenizer, latent_size: int = 16):
        super().__init__(cfg.lr, cfg.steps)
        self.p_uncond, self.grounding_loss = cfg.p_uncond, cfg.grounding_loss
        if self.grounding_loss:  # the loss finds each object's words at fixed token positions
            example = tokenize(tokenizer, ["a red circle and a blue square"])[0]
            if [tokenizer.convert_ids_to_tokens(int(example[j])) for pair in WORD_POSITIONS for j in pair] != [
                    "red</w>", "circle</w>", "blue</w>", "square</w>"]:
                raise RuntimeError(f"WORD_POSITIONS {WORD_POSITIONS} do not match this tokenizer")
        self.text_encoder = CLIPTextModel(CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=cfg.text_hidden, intermediate_size=4 * cfg.text_hidden,
            num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
            max_position_embeddings=tokenizer.model_max_length, projection_dim=cfg.text_hidden,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id))
        n = len(cfg.block_out_channels)
        self.unet = UNet2DConditionModel(
            sample_size=latent_size, in_channels=4, out_channels=4, layers_per_block=1,
            block_out_channels=tuple(cfg.block_out_channels), down_block_types=("CrossAttnDownBlock2D",) * n,
            up_block_types=("CrossAttnUpBlock2D",) * n, cross_attention_dim=cfg.text_hidden,
            attention_head_dim=cfg.attention_heads, norm_num_groups=cfg.norm_num_groups)
        self.noise = DDPMScheduler(**NOISE, prediction_type=cfg.prediction_type)
        self.register_buffer("empty_ids", tokenize(tokenizer, [""])[0], persistent=False)

    def training_step(self, batch, _):
        latents, ids, *masks = batch
        drop = torch.rand(len(ids), device=ids.device) < self.p_uncond
        ids = torch.where(drop[:, None], self.empty_ids, ids)
        noise = torch.randn_like(latents)
        t = torch.randint(0, self.noise.config.num_train_timesteps, (len(latents),), device=latents.device)
        noisy = self.noise.add_noise(latents, noise, t)
        with GroundingRecorder(self.unet) if self.grounding_loss else nullcontext() as recorder:
            pred = self.unet(noisy, t, encoder_hidden_states=self.text_encoder(ids)[0]).sample
        epsilon = self.noise.config.prediction_type == "epsilon"
        loss = F.mse_loss(pred, noise if epsilon else self.noise.get_velocity(latents, noise, t))
        if self.grounding_loss:
            grounding = torch.stack([grounding_loss(p, masks[0], ~drop) for p in recorder.probs]).mean()
            self.log("grounding", grounding, prog_bar=True)
            loss = loss + self.grounding_loss * grounding
        return self.record(loss)


# positions of (colour, shape) of the first and second object in the tokens of 'a c s and a c s' (BOS first)
WORD_POSITIONS = ((2, 3), (6, 7))


class GroundingRecorder(CrossAttentionRecorder):
    """The explainer's cross-attention recorder, keeping each layer's head-averaged probabilities [B, q, K] with
    their gradients (for a training loss) instead of detached maps."""

    def __init__(self, unet):
        super().__init__(unet, (1, 1))
        self.probs: list[torch.Tensor] = []

    def record(self, name: str, probs: torch.Tensor, heads: int) -> None:
        self.probs.append(probs.view(probs.shape[0] // heads, heads, *probs.shape[1:]).mean(1))


def grounding_loss(probs: torch.Tensor, masks: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """TokenCompose's token loss (Wang et al., CVPR 2024) for one cross-attention layer: mean over the prompted
    objects of (1 − the share of the object's colour and shape tokens' attention that falls inside its mask)².

    ``probs`` [B, q, K] (q = s·s positions), ``masks`` uint8 [B, 2, H, W] (object k of the prompt; all zero when
    absent), ``keep`` bool [B] (False for the prompts replaced by "").
    """
    s = math.isqrt(probs.shape[1])
    inside = F.adaptive_avg_pool2d(masks.float(), (s, s)).flatten(2)  # [B, 2, q], soft
    attention = probs[:, :, torch.tensor(WORD_POSITIONS, device=probs.device)].permute(0, 2, 3, 1)  # [B, 2, 2, q]
    share = (attention * inside[:, :, None]).sum(-1) / attention.sum(-1).clamp_min(1e-8)
    valid = ((inside.sum(-1) > 0) & keep[:, None])[:, :, None].expand_as(share)
    return ((1 - share[valid]) ** 2).mean() if valid.any() else probs.sum() * 0


class WeightAverage(EMAWeightAveraging):
    """Lightning's EMA callback, except that the module keeps its last weights when training ends.

    Checkpoints then always hold both (``state_dict``: the average, ``current_model_state``: the last weights), so a
    resumed or extended run continues from the last weights; the stage's result is read from the checkpoint.
    """

    def on_train_end(self, trainer, pl_module) -> None:
        pass


# -- the job ----------------------------------------------------------------------------------------------------
class WorldTraining:
    """Train, save, judge and describe the Shapes pipeline (``models/shapes-sd``) and classifier (``models/shapes-classifier``)."""

    def __init__(self, model_dir: str, classifier_dir: str, seed: int = 0, scenes: int = 30000,
                 resume: bool = True, checkpoint_every: int = 100, accelerator: str = "cpu",
                 vae: dict | None = None, classifier: dict | None = None, denoiser: dict | None = None,
                 evaluation: dict | None = None):
        check(scenes >= 1, "pipeline.scenes", scenes, "an integer >= 1")
        check(checkpoint_every >= 1, "pipeline.checkpoint_every", checkpoint_every, "an integer >= 1")
        self.model_dir, self.classifier_dir = Path(model_dir), Path(classifier_dir)
        self.seed, self.scenes, self.resume = int(seed), int(scenes), resume
        self.checkpoint_every, self.accelerator = checkpoint_every, accelerator
        self.vae_cfg = _config(VaeConfig, vae, "vae")
        self.classifier_cfg = _config(ClassifierConfig, classifier, "classifier")
        self.denoiser_cfg = _config(DenoiserConfig, denoiser, "denoiser")
        self.eval_cfg = _config(EvalConfig, evaluation, "evaluation")
        for name, cfg in (("vae", self.vae_cfg), ("classifier", self.classifier_cfg), ("denoiser", self.denoiser_cfg)):
            check(cfg.steps >= 1 and cfg.batch_size >= 1, f"pipeline.{name}.steps/batch_size",
                  (cfg.steps, cfg.batch_size), "integers >= 1")
        d = self.denoiser_cfg
        check(d.prediction_type in ("epsilon", "v_prediction"), "pipeline.denoiser.prediction_type",
              d.prediction_type, "epsilon or v_prediction")
        check(d.ema_decay is None or 0 < d.ema_decay < 1, "pipeline.denoiser.ema_decay", d.ema_decay,
              "a number in (0, 1), or null")
        check(d.grounding_loss >= 0, "pipeline.denoiser.grounding_loss", d.grounding_loss, "a number >= 0 (0 = off)")
        check(d.ema_decay is None or 0 <= d.ema_start < d.steps, "pipeline.denoiser.ema_start", d.ema_start,
              f"a step in [0, pipeline.denoiser.steps={d.steps}), or pipeline.denoiser.ema_decay=null")

    @property
    def checkpoint_dir(self) -> Path:
        return self.model_dir / "checkpoints"

    def fit(self, stage: str, module: StageModule, *tensors: torch.Tensor, batch_size: int,
            callbacks: tuple = ()) -> dict:
        """Train ``module`` for its steps on random batches of ``tensors``, resuming from the stage's last.ckpt."""
        ckpt_dir = self.checkpoint_dir / stage
        last = ckpt_dir / "last.ckpt"
        data = TensorDataset(*tensors)
        sampler = RandomSampler(data, replacement=True, num_samples=module.steps * batch_size,
                                generator=torch.Generator().manual_seed(self.seed))
        trainer = L.Trainer(
            accelerator=self.accelerator, devices=1, max_steps=module.steps, max_epochs=None, logger=False,
            default_root_dir=str(ckpt_dir), log_every_n_steps=10, num_sanity_val_steps=0,
            callbacks=[TQDMProgressBar(), ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=0,
                                                          every_n_train_steps=self.checkpoint_every,
                                                          enable_version_counter=False), *callbacks])
        start = torch.load(last, map_location="cpu", weights_only=False)["global_step"] if last.is_file() else 0
        log.info("stage %s: steps %d -> %d (batch %d)%s", stage, start, module.steps, batch_size,
                 f", resuming from {last}" if start else "")
        with warnings.catch_warnings():
            # batches are drawn with replacement, so restarting the sampler on resume changes nothing in distribution
            warnings.filterwarnings("ignore", ".*(does not have many workers|dataloader is not resumable).*")
            trainer.fit(module, DataLoader(data, batch_size=batch_size, sampler=sampler, drop_last=True),
                        ckpt_path=str(last) if last.is_file() else None)
        trainer.save_checkpoint(last)
        # the stage's result is the checkpoint's state_dict: the last weights, or their average under WeightAverage
        module.load_state_dict(torch.load(last, map_location="cpu", weights_only=False)["state_dict"])
        module.eval().cpu()
        tail = [loss for _, loss in module.losses[-50:]]
        return {"start_step": int(start), "steps": int(trainer.global_step), "batch_size": batch_size,
                "seconds": round(module.seconds, 1), "final_loss": float(np.mean(tail)) if tail else float("nan")}

    def train_vae(self, images: torch.Tensor) -> tuple[VaeModule, dict]:
        L.seed_everything(self.seed)
        vae = VaeModule(self.vae_cfg)
        return vae, self.fit("vae", vae, images, batch_size=self.vae_cfg.batch_size)

    def train_classifier(self) -> tuple[ClassifierModule, dict]:
        """Train on single-object scenes (sizes 6–16 px), measure the accuracy on fresh ones, save to ``classifier_dir``."""
        L.seed_everything(self.seed + 1)
        c = self.classifier_cfg
        images, scenes = render_scenes(c.scenes + c.held_out, self.seed + 1, 1, min_size=6, max_size=16)
        labels = torch.tensor([label_of(s.objects[0].colour, s.objects[0].shape) for s in scenes])
        module = ClassifierModule(c)
        stats = self.fit("classifier", module, images[: c.scenes], labels[: c.scenes], batch_size=c.batch_size)
        with torch.no_grad():
            predicted = module.classifier(to_unit(images[c.scenes:])).argmax(-1)
        stats["held_out_accuracy"] = float((predicted == labels[c.scenes:]).float().mean())
        module.classifier.save(self.classifier_dir)
        return module, stats

    def train_denoiser(self, vae: AutoencoderKL, images: torch.Tensor, scenes: list, tokenizer):
        """Encode the scenes once, set the VAE's scaling factor, train text encoder + UNet on the scaled latents."""
        L.seed_everything(self.seed + 2)
        with torch.no_grad():
            latents = torch.cat([vae.encode(to_unit(x) * 2 - 1).latent_dist.mode() for x in images.split(512)])
            recon_mse = float(F.mse_loss(vae.decode(latents[:512]).sample, to_unit(images[:512]) * 2 - 1))
        vae.register_to_config(scaling_factor=1.0 / float(latents.std()))
        cfg = self.denoiser_cfg
        module = DenoiserModule(cfg, tokenizer, latents.shape[-1])
        ema = () if cfg.ema_decay is None else (
            WeightAverage(decay=cfg.ema_decay, update_starting_at_step=cfg.ema_start, use_buffers=False),)
        ids = tokenize(tokenizer, [s.prompt for s in scenes])
        masks = (object_masks(scenes),) if cfg.grounding_loss else ()
        stats = self.fit("denoiser", module, latents * vae.config.scaling_factor, ids, *masks,
                         batch_size=cfg.batch_size, callbacks=ema)
        return module, stats, recon_mse

    def run(self, out_dir: str | Path) -> dict:
        """Train every stage (resuming), save both models, judge the pipeline and write the model cards."""
        from diffexplain.world.card import write_cards

        for hf_logging in (diffusers.utils.logging, transformers.utils.logging):  # keep the job's output readable
            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
        if not self.resume and self.checkpoint_dir.exists():
            shutil.rmtree(self.checkpoint_dir)
        started = time.perf_counter()
        images, scenes = render_scenes(self.scenes, self.seed)
        tokenizer = load_tokenizer()
        vae, vae_stats = self.train_vae(images)
        classifier, classifier_stats = self.train_classifier()
        denoiser, denoiser_stats, vae_stats["recon_mse"] = self.train_denoiser(vae.vae, images, scenes, tokenizer)
        pipe = StableDiffusionPipeline(
            vae=vae.vae, text_encoder=denoiser.text_encoder, tokenizer=tokenizer, unet=denoiser.unet,
            scheduler=DDIMScheduler(**NOISE, prediction_type=self.denoiser_cfg.prediction_type, clip_sample=False,
                                    set_alpha_to_one=False, steps_offset=1),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.save_pretrained(self.model_dir, safe_serialization=True)
        log.info("saved the pipeline to %s", self.model_dir)

        summary = {"seed": self.seed, "scenes": self.scenes, "grammar": GRAMMAR,
                   "scaling_factor": vae.vae.config.scaling_factor,
                   "wall_seconds": round(time.perf_counter() - started, 1),
                   "stages": {"vae": vae_stats, "classifier": classifier_stats, "denoiser": denoiser_stats},
                   "losses": {"vae": vae.losses, "classifier": classifier.losses, "denoiser": denoiser.losses},
                   "config": {"vae": asdict(self.vae_cfg), "classifier": asdict(self.classifier_cfg),
                              "denoiser": asdict(self.denoiser_cfg), "evaluation": asdict(self.eval_cfg)}}
        summary.update(write_cards(self.model_dir, self.classifier_dir, summary, self.eval_cfg))
        write_json(Path(out_dir) / "train_world.json", {k: v for k, v in summary.items() if k != "losses"})
        return summary
