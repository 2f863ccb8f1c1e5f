"""``pipeline=train_world``: train the Shapes world's Stable Diffusion pipeline and its judge, offline on a CPU.

Three Lightning stages (:mod:`diffexplain.pipelines.world_training.stages`), each checkpointed to
``<model_dir>/checkpoints/<stage>/last.ckpt`` and resumed from there (loaded with ``weights_only=True``):

1. ``vae``: an AutoencoderKL 32×32×3 → 16×16×4 on rendered scenes (MSE + a small KL term); its
   ``scaling_factor`` is then set to 1 / std of the training latents.
2. ``classifier``: the :class:`ShapesClassifier` (colour × shape of single-object scenes).
3. ``denoiser``: a CLIPTextModel and a UNet2DConditionModel (cross-attention at every level: 16×16 and 8×8 for
   two levels) trained jointly on the latents, v-prediction, with empty prompts for classifier-free guidance;
   optionally (``grounding_loss``, used by ``pipeline=train_world_grounded``) with a loss that pulls each object's
   colour and shape tokens' cross-attention into the object's mask.

The result is saved with ``save_pretrained`` as a plain ``StableDiffusionPipeline`` (DDIM scheduler), judged on
generated samples (:mod:`diffexplain.pipelines.world_training.fidelity`) and described in a model card (``README.md``).
"""

from __future__ import annotations

import logging
import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import diffusers
import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
import transformers
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from diffexplain.errors import UserError, check
from diffexplain.io import write_json
from diffexplain.pipelines.world_training.data import object_masks, render_scenes, to_unit, tokenize
from diffexplain.pipelines.world_training.stages import (
    NOISE,
    ClassifierConfig,
    ClassifierModule,
    DenoiserConfig,
    DenoiserModule,
    StageModule,
    VaeConfig,
    VaeModule,
)
from diffexplain.pipelines.world_training.weight_average import WeightAverage
from diffexplain.world.classifier import label_of
from diffexplain.world.scenes import GRAMMAR
from diffexplain.world.tokenizer import load_tokenizer

log = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    samples: int = 200
    num_steps: int = 20
    guidance_scale: float = 5.0
    scheduler: str | None = "dpm_solver"  # null keeps the pipeline's own (flow matching: the only choice)
    compare_guidance: tuple[float, ...] = ()
    max_sequence_length: int | None = None  # T5 prompt tokens of an SD3 pipeline (as trained)


def _config(cls, value: dict | None, key: str):
    try:
        return cls(**(value or {}))
    except TypeError as e:
        raise UserError(f"pipeline.{key}", value, f"keys of {', '.join(cls.__dataclass_fields__)}") from e


def read_checkpoint(path: Path) -> dict:
    """A stage's Lightning checkpoint, loaded with ``weights_only=True``: tensors and plain containers, never code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch refuses anything but tensors and plain containers
        raise UserError("pipeline.resume", True, f"checkpoints that load with torch.load(weights_only=True); {path} "
                        "holds other objects: delete it or set pipeline.resume=false") from e


class WorldTraining:
    """Train, save, judge and describe the Shapes pipeline (``models/shapes-sd``) and classifier
    (``models/shapes-classifier``)."""

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
        start = read_checkpoint(last)["global_step"] if last.is_file() else 0
        log.info("stage %s: steps %d -> %d (batch %d)%s", stage, start, module.steps, batch_size,
                 f", resuming from {last}" if start else "")
        with warnings.catch_warnings():
            # batches are drawn with replacement, so restarting the sampler on resume changes nothing in distribution
            warnings.filterwarnings("ignore", ".*(does not have many workers|dataloader is not resumable).*")
            trainer.fit(module, DataLoader(data, batch_size=batch_size, sampler=sampler, drop_last=True),
                        ckpt_path=str(last) if last.is_file() else None, weights_only=True)
        trainer.save_checkpoint(last)
        # the stage's result is the checkpoint's state_dict: the last weights, or their average under WeightAverage
        module.load_state_dict(read_checkpoint(last)["state_dict"])
        module.eval().cpu()
        tail = [loss for _, loss in module.losses[-50:]]
        return {"start_step": int(start), "steps": int(trainer.global_step), "batch_size": batch_size,
                "seconds": round(module.seconds, 1), "final_loss": float(np.mean(tail)) if tail else float("nan")}

    def train_vae(self, images: torch.Tensor) -> tuple[VaeModule, dict]:
        L.seed_everything(self.seed)
        vae = VaeModule(self.vae_cfg)
        return vae, self.fit("vae", vae, images, batch_size=self.vae_cfg.batch_size)

    def train_classifier(self) -> tuple[ClassifierModule, dict]:
        """Train on single-object scenes (sizes 6–16 px), measure the accuracy on fresh ones, save to
        ``classifier_dir``."""
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

    def start(self) -> float:
        """Quiet the libraries, drop the checkpoints unless resuming; the start time."""
        for hf_logging in (diffusers.utils.logging, transformers.utils.logging):  # keep the job's output readable
            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
        if not self.resume and self.checkpoint_dir.exists():
            shutil.rmtree(self.checkpoint_dir)
        return time.perf_counter()

    def run(self, out_dir: str | Path) -> dict:
        """Train every stage (resuming), save both models, judge the pipeline and write the model cards."""
        from diffexplain.pipelines.world_training.card import write_cards

        started = self.start()
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
