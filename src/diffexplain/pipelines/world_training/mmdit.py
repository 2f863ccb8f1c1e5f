"""``pipeline=train_world_mmdit``: the Shapes world's diffusion transformer, a real ``StableDiffusion3Pipeline``.

The UNet world's VAE (``models/shapes-sd/vae``, 32×32×3 → 16×16×4) and CLIP tokenizer are reused; the judge is the
world's classifier. Trained here, jointly and resumably (Lightning, ``<model_dir>/checkpoints/mmdit/last.ckpt``):
two small CLIP text encoders with projections (SD3's CLIP-L and CLIP-G roles) and an ``SD3Transformer2DModel`` (joint
attention over 2×2 latent patches: 8×8 image tokens) with rectified-flow matching — z_σ = (1−σ)·x0 + σ·ε, target
v = ε − x0, σ drawn logit-normal (SD3's training distribution), ``p_uncond`` empty prompts for classifier-free
guidance. SD3's pipeline also needs a T5 encoder to load with plain ``from_pretrained``: the world ships a tiny one
(the project's T5-style grammar tokenizer) whose final norm is zero, so its states are exactly zero — SD3's own
"without T5" input — and it is never trained. Prompts are encoded exactly as ``StableDiffusion3Pipeline.encode_prompt``
does (:func:`sd3_prompt_embeds`, checked against it in the tests), with ``max_sequence_length`` T5 tokens.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

from diffexplain.errors import check
from diffexplain.io import write_json
from diffexplain.pipelines.world_training.data import render_scenes, to_unit, tokenize
from diffexplain.pipelines.world_training.job import WorldTraining, _config
from diffexplain.pipelines.world_training.stages import StageModule
from diffexplain.pipelines.world_training.weight_average import WeightAverage
from diffexplain.world.scenes import GRAMMAR
from diffexplain.world.tokenizer import load_t5_tokenizer, load_tokenizer

log = logging.getLogger(__name__)


@dataclass
class MMDiTConfig:
    steps: int = 3500
    batch_size: int = 64
    lr: float = 1e-3
    patch_size: int = 2            # 16x16 latents -> 8x8 image tokens
    layers: int = 4                # joint blocks (the last has no text output, as in SD3)
    heads: int = 4
    head_dim: int = 32
    text_hidden: int = 64          # each CLIP encoder; the joint text width (and T5's) is twice this
    text_layers: int = 2
    text_heads: int = 4
    max_sequence_length: int = 16  # T5 tokens (zeros) after the 2 x 16 CLIP tokens
    p_uncond: float = 0.1
    shift: float = 1.0             # the flow-matching sigma shift (SD3: 3.0 at 1024^2; none for 32^2 images)
    ema_decay: float | None = 0.998
    ema_start: int = 1000


def _clip(tokenizer, cfg: MMDiTConfig) -> CLIPTextModelWithProjection:
    return CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.text_hidden, intermediate_size=4 * cfg.text_hidden,
        num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
        max_position_embeddings=tokenizer.model_max_length, projection_dim=cfg.text_hidden,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id))


def zero_t5(t5_tokenizer, width: int) -> T5EncoderModel:
    """A one-layer T5 encoder whose output is exactly zero (final norm weight 0), frozen."""
    t5 = T5EncoderModel(T5Config(vocab_size=len(t5_tokenizer), d_model=width, d_kv=width // 4, d_ff=width,
                                 num_layers=1, num_heads=4, pad_token_id=t5_tokenizer.pad_token_id,
                                 eos_token_id=t5_tokenizer.eos_token_id, decoder_start_token_id=0))
    with torch.no_grad():
        t5.encoder.final_layer_norm.weight.zero_()
    return t5.requires_grad_(False).eval()


def sd3_prompt_embeds(encoders, ids) -> tuple[torch.Tensor, torch.Tensor]:
    """``(prompt_embeds, pooled)`` as ``StableDiffusion3Pipeline.encode_prompt`` computes them from token ids of its
    three tokenizers: each CLIP's penultimate hidden states, concatenated on features and zero-padded to T5's width,
    then T5's states along the sequence; pooled = both CLIPs' projected pooled outputs, concatenated."""
    te1, te2, te3 = encoders
    out1, out2 = te1(ids[0], output_hidden_states=True), te2(ids[1], output_hidden_states=True)
    t5 = te3(ids[2])[0]
    clip = torch.cat([out1.hidden_states[-2], out2.hidden_states[-2]], dim=-1)
    clip = F.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
    return torch.cat([clip, t5], dim=-2), torch.cat([out1.text_embeds, out2.text_embeds], dim=-1)


class MMDiTModule(StageModule):
    """Two CLIP encoders + an SD3 transformer trained with rectified flow (see the module docstring)."""

    def __init__(self, cfg: MMDiTConfig, tokenizer, t5_tokenizer, latent_size: int = 16):
        super().__init__(cfg.lr, cfg.steps)
        self.p_uncond, self.shift = cfg.p_uncond, cfg.shift
        self.text_encoder, self.text_encoder_2 = _clip(tokenizer, cfg), _clip(tokenizer, cfg)
        width = 2 * cfg.text_hidden
        self.text_encoder_3 = zero_t5(t5_tokenizer, width)
        self.transformer = SD3Transformer2DModel(
            sample_size=latent_size, patch_size=cfg.patch_size, in_channels=4, out_channels=4, num_layers=cfg.layers,
            attention_head_dim=cfg.head_dim, num_attention_heads=cfg.heads, joint_attention_dim=width,
            caption_projection_dim=cfg.heads * cfg.head_dim, pooled_projection_dim=width,
            pos_embed_max_size=2 * latent_size // cfg.patch_size)
        empty = [tokenize(tokenizer, [""])[0], tokenize(tokenizer, [""])[0], t5_ids(t5_tokenizer, [""], cfg)[0]]
        for k, ids in enumerate(empty):
            self.register_buffer(f"empty_{k}", ids, persistent=False)

    def encoders(self):
        return self.text_encoder, self.text_encoder_2, self.text_encoder_3

    def training_step(self, batch, _):
        latents, *ids = batch
        drop = torch.rand(len(latents), device=latents.device) < self.p_uncond
        ids = [torch.where(drop[:, None], getattr(self, f"empty_{k}"), x) for k, x in enumerate(ids)]
        embeds, pooled = sd3_prompt_embeds(self.encoders(), ids)
        sigma = torch.sigmoid(torch.randn(len(latents), device=latents.device))  # logit-normal(0, 1)
        sigma = self.shift * sigma / (1 + (self.shift - 1) * sigma)
        noise = torch.randn_like(latents)
        s = sigma[:, None, None, None]
        noisy = (1 - s) * latents + s * noise
        pred = self.transformer(hidden_states=noisy, timestep=sigma * 1000, encoder_hidden_states=embeds,
                                pooled_projections=pooled).sample
        return self.record(F.mse_loss(pred, noise - latents))


def t5_ids(t5_tokenizer, prompts: list[str], cfg: MMDiTConfig) -> torch.Tensor:
    """T5 token ids padded to ``max_sequence_length``, as SD3's pipeline tokenizes."""
    return t5_tokenizer(prompts, padding="max_length", max_length=cfg.max_sequence_length, truncation=True,
                        add_special_tokens=True, return_tensors="pt").input_ids


class MMDiTWorldTraining(WorldTraining):
    """Train, save, judge and describe ``models/shapes-mmdit`` (the VAE and classifier of the UNet world reused)."""

    def __init__(self, model_dir: str, vae_dir: str, classifier_dir: str, seed: int = 0, scenes: int = 30000,
                 resume: bool = True, checkpoint_every: int = 100, accelerator: str = "cpu",
                 denoiser: dict | None = None, evaluation: dict | None = None):
        super().__init__(model_dir, classifier_dir, seed=seed, scenes=scenes, resume=resume,
                         checkpoint_every=checkpoint_every, accelerator=accelerator, evaluation=evaluation)
        self.vae_dir = Path(vae_dir)
        self.mmdit_cfg = _config(MMDiTConfig, denoiser, "denoiser")
        m = self.mmdit_cfg
        check(m.steps >= 1 and m.batch_size >= 1, "pipeline.denoiser.steps/batch_size", (m.steps, m.batch_size),
              "integers >= 1")
        check(m.ema_decay is None or (0 < m.ema_decay < 1 and 0 <= m.ema_start < m.steps), "pipeline.denoiser.ema",
              (m.ema_decay, m.ema_start), "ema_decay in (0, 1) and ema_start in [0, steps), or ema_decay=null")
        check(16 % m.patch_size == 0, "pipeline.denoiser.patch_size", m.patch_size, "1, 2, 4, 8 or 16")

    def run(self, out_dir: str | Path) -> dict:
        """Train (resuming), save the pipeline, judge it and write its model card."""
        from diffexplain.pipelines.world_training.card import write_cards

        started = self.start()
        images, scenes = render_scenes(self.scenes, self.seed)
        tokenizer, t5_tokenizer = load_tokenizer(), load_t5_tokenizer(self.mmdit_cfg.max_sequence_length)
        vae = AutoencoderKL.from_pretrained(self.vae_dir).eval()
        vae.register_to_config(shift_factor=0.0)  # SD3's pipeline shifts latents; the world's VAE is centred as is
        L.seed_everything(self.seed + 3)
        with torch.no_grad():
            latents = torch.cat([vae.encode(to_unit(x) * 2 - 1).latent_dist.mode() for x in images.split(512)])
        cfg = self.mmdit_cfg
        module = MMDiTModule(cfg, tokenizer, t5_tokenizer, latents.shape[-1])
        prompts = [s.prompt for s in scenes]
        ids = tokenize(tokenizer, prompts)
        ema = () if cfg.ema_decay is None else (
            WeightAverage(decay=cfg.ema_decay, update_starting_at_step=cfg.ema_start, use_buffers=False),)
        stats = self.fit("mmdit", module, latents * vae.config.scaling_factor, ids, ids,
                         t5_ids(t5_tokenizer, prompts, cfg), batch_size=cfg.batch_size, callbacks=ema)
        pipe = StableDiffusion3Pipeline(
            transformer=module.transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=cfg.shift), vae=vae,
            text_encoder=module.text_encoder, tokenizer=tokenizer, text_encoder_2=module.text_encoder_2,
            tokenizer_2=tokenizer, text_encoder_3=module.text_encoder_3, tokenizer_3=t5_tokenizer)
        pipe.save_pretrained(self.model_dir, safe_serialization=True)
        log.info("saved the pipeline to %s", self.model_dir)
        unet_world = self.vae_dir.parent / "training.json"  # the judge's accuracy, measured when it was trained
        accuracy = json.loads(unet_world.read_text())["stages"]["classifier"]["held_out_accuracy"] \
            if unet_world.is_file() else float("nan")
        summary = {"seed": self.seed, "scenes": self.scenes, "grammar": GRAMMAR, "classifier_accuracy": accuracy,
                   "scaling_factor": vae.config.scaling_factor,
                   "wall_seconds": round(time.perf_counter() - started, 1),
                   "stages": {"mmdit": stats}, "losses": {"mmdit": module.losses},
                   "config": {"denoiser": asdict(cfg), "evaluation": asdict(self.eval_cfg)}}
        summary.update(write_cards(self.model_dir, self.classifier_dir, summary, self.eval_cfg))
        write_json(Path(out_dir) / "train_world.json", {k: v for k, v in summary.items() if k != "losses"})
        return summary
