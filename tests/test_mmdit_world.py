"""The Shapes world's diffusion transformer (models/shapes-mmdit): its training job, its prompt encoding (exactly
SD3's), the shipped model's loading with plain ``from_pretrained`` and what DF-RISE finds on it."""

import json

import pytest
import torch
from conftest import ROOT, cli_refusal, run_cli
from diffusers import StableDiffusion3Pipeline
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from diffexplain.errors import UserError
from diffexplain.explainers import RISE
from diffexplain.metrics.localisation import area_share, mask_to_grid, mass_inside
from diffexplain.models import DiffusionModel
from diffexplain.pipelines.world_training.data import tokenize
from diffexplain.pipelines.world_training.mmdit import (
    MMDiTConfig,
    MMDiTModule,
    MMDiTWorldTraining,
    sd3_prompt_embeds,
    t5_ids,
)
from diffexplain.schedules import Uniform
from diffexplain.similarity import SSIM
from diffexplain.world.segment import segment
from diffexplain.world.tokenizer import load_t5_tokenizer, load_tokenizer

SHAPES_MMDIT = ROOT / "models" / "shapes-mmdit"
PROMPTS = ["a red circle and a blue square", ""]


def test_prompts_are_encoded_exactly_as_the_sd3_pipeline_does():
    cfg = MMDiTConfig(layers=2, text_hidden=32, text_heads=2, heads=2, head_dim=16)
    tokenizer, t5_tokenizer = load_tokenizer(), load_t5_tokenizer(cfg.max_sequence_length)
    module = MMDiTModule(cfg, tokenizer, t5_tokenizer).eval()
    pipe = StableDiffusion3Pipeline(transformer=module.transformer, scheduler=None, vae=None,
                                    text_encoder=module.text_encoder, tokenizer=tokenizer,
                                    text_encoder_2=module.text_encoder_2, tokenizer_2=tokenizer,
                                    text_encoder_3=module.text_encoder_3, tokenizer_3=t5_tokenizer)
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt(prompt=PROMPTS, prompt_2=None, prompt_3=None,
                                                  do_classifier_free_guidance=False,
                                                  max_sequence_length=cfg.max_sequence_length)
        ids = tokenize(tokenizer, PROMPTS)
        ours = sd3_prompt_embeds(module.encoders(), [ids, ids, t5_ids(t5_tokenizer, PROMPTS, cfg)])
    assert torch.equal(ours[0], embeds) and torch.equal(ours[1], pooled)
    assert embeds[:, tokenizer.model_max_length:].abs().max() == 0  # the T5 part: exactly SD3's "no T5" zeros


def test_train_world_mmdit_config_and_bad_keys(tmp_path, capsys):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["pipeline=train_world_mmdit", "model=shapes_mmdit"])
    job = instantiate(cfg.pipeline)
    assert job.model_dir.name == "shapes-mmdit" and job.vae_dir.parts[-2:] == ("shapes-sd", "vae")
    assert job.eval_cfg.guidance_scale == cfg.model.guidance_scale  # the card judges what model=shapes_mmdit ships
    assert job.eval_cfg.max_sequence_length == cfg.model.max_sequence_length == job.mmdit_cfg.max_sequence_length
    with pytest.raises(UserError, match="pipeline.denoiser"):
        MMDiTWorldTraining("a", "v", "c", denoiser={"layerz": 3})
    line = cli_refusal("pipeline=train_world_mmdit", "logger=none", "pipeline.denoiser.patch_size=3",
                       out_dir=tmp_path / "run", capsys=capsys)
    assert line.startswith("error: pipeline.denoiser.patch_size"), line


@pytest.mark.slow  # a training, even at smoke size (22 s); fast cousins: the two tests above
def test_smoke_training_saves_a_plain_loadable_sd3_pipeline_and_card(tmp_path):
    models = tmp_path / "models"
    res = run_cli("pipeline=train_world_mmdit", "logger=none", f"pipeline.model_dir={models / 'shapes-mmdit'}",
                  f"pipeline.vae_dir={ROOT / 'models' / 'shapes-sd' / 'vae'}",
                  f"pipeline.classifier_dir={ROOT / 'models' / 'shapes-classifier'}",
                  f"hydra.run.dir={tmp_path / 'run'}",
                  "pipeline.scenes=256", "pipeline.denoiser.steps=20", "pipeline.denoiser.ema_start=10",
                  "pipeline.denoiser.layers=2", "pipeline.evaluation.samples=4", "pipeline.evaluation.num_steps=2",
                  "pipeline.evaluation.compare_guidance=[]", "pipeline.checkpoint_every=10")
    assert res.returncode == 0, res.stderr[-3000:]
    pipe = StableDiffusion3Pipeline.from_pretrained(models / "shapes-mmdit")
    image = pipe(PROMPTS[0], num_inference_steps=2, max_sequence_length=16, output_type="np").images
    assert image.shape == (1, 32, 32, 3)
    card = (models / "shapes-mmdit" / "README.md").read_text()
    assert "StableDiffusion3Pipeline" in card and "Fidelity" in card
    summary = json.loads((tmp_path / "run" / "train_world.json").read_text())
    assert summary["stages"]["mmdit"]["steps"] == 20


@pytest.fixture(scope="module")
def shapes_mmdit():
    return DiffusionModel.from_pretrained(str(SHAPES_MMDIT), guidance_scale=5.0, max_sequence_length=16)


def test_the_shipped_mmdit_loads_with_plain_from_pretrained():
    pipe = StableDiffusion3Pipeline.from_pretrained(SHAPES_MMDIT)
    assert type(pipe.transformer).__name__ == "SD3Transformer2DModel"
    assert sum(p.stat().st_size for p in SHAPES_MMDIT.rglob("*") if p.is_file() and "checkpoints" not in p.parts) \
        <= 25 * 2**20


def test_late_step_rise_puts_more_mass_inside_the_prompted_objects_than_their_area(shapes_mmdit, one_thread):
    prompt = "a red circle and a blue square"
    trajectory = shapes_mmdit.generate(prompt, seed=1, schedule=Uniform(20))
    saliency = RISE(shapes_mmdit, SSIM(), n_masks=256, batch_size=128).explain(trajectory, [17])[0].clamp(min=0)
    image = shapes_mmdit.decode(trajectory.latents[-1:])[0].permute(1, 2, 0).numpy()
    objects = mask_to_grid(segment(image, prompt)["circle"] | segment(image, prompt)["square"], saliency.shape)
    assert 0 < area_share(objects) < 0.5  # both objects drawn
    assert mass_inside(saliency, objects) > area_share(objects)
