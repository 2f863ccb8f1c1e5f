"""The Shapes world's training job (smoke-sized), the shipped pipeline and classifier, and the fidelity judge."""

import json
import shutil
import time

import numpy as np
import pytest
import torch
from conftest import ROOT, cli_refusal, run_cli
from diffusers import StableDiffusionPipeline
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from diffexplain.errors import UserError
from diffexplain.models import DiffusionModel, load_pipeline
from diffexplain.pipelines.world_training.fidelity import eval_set, generate_samples, judge, rates
from diffexplain.pipelines.world_training.grounding import WORD_POSITIONS, grounding_loss
from diffexplain.pipelines.world_training.job import WorldTraining, read_checkpoint
from diffexplain.schedules import Uniform
from diffexplain.validation import validate
from diffexplain.world import COLOURS, render, sample_scene
from diffexplain.world.classifier import classifier_features, load_classifier, split_label

SHAPES_SD, SHAPES_CLASSIFIER = ROOT / "models" / "shapes-sd", ROOT / "models" / "shapes-classifier"
SMOKE = {  # tiny sizes: every stage 20 steps
    "scenes": 256, "checkpoint_every": 10,
    "vae": {"steps": 20, "batch_size": 16, "block_out_channels": [8, 16], "norm_num_groups": 4},
    "classifier": {"steps": 20, "batch_size": 16, "channels": [8, 8, 16], "scenes": 128, "held_out": 32},
    "denoiser": {"steps": 20, "batch_size": 16, "block_out_channels": [16, 32], "attention_heads": 2,
                 "text_hidden": 32, "text_heads": 2, "ema_start": 10, "grounding_loss": 0.1},
    "evaluation": {"samples": 4, "num_steps": 2, "compare_guidance": []},
}


def overrides(prefix: str, cfg: dict) -> list[str]:
    """Hydra overrides ``prefix.key=value`` for a nested dict."""
    out = []
    for key, value in cfg.items():
        if isinstance(value, dict):
            out += overrides(f"{prefix}.{key}", value)
        else:
            out.append(f"{prefix}.{key}={json.dumps(value)}")
    return out


# a training, even at smoke size, is slow; its fast cousins: test_train_world_config_and_bad_keys (the job's config and
# refusals) and test_a_pickled_checkpoint_is_refused (checkpoints are read without unpickling code)
TRAINS = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """``python run.py pipeline=train_world`` at smoke size: (models dir, run dir)."""
    root = tmp_path_factory.mktemp("world")
    res = run_cli("pipeline=train_world", "logger=none", f"paths.models_dir={root / 'models'}",
                  f"hydra.run.dir={root / 'run'}", *overrides("pipeline", SMOKE))
    assert res.returncode == 0, res.stderr[-3000:]
    return root / "models", root / "run"


@TRAINS
def test_smoke_training_saves_a_loadable_pipeline_classifier_and_card(smoke):
    models, run = smoke
    for pipe in (load_pipeline(str(models / "shapes-sd")),
                 StableDiffusionPipeline.from_pretrained(models / "shapes-sd")):
        assert isinstance(pipe, StableDiffusionPipeline)
        image = pipe("a red circle and a blue square", num_inference_steps=2, output_type="np").images
        assert image.shape == (1, 32, 32, 3)
    model = DiffusionModel.from_pretrained(str(models / "shapes-sd"), scheduler="dpm_solver")
    assert model.latent_shape == (4, 16, 16)
    assert model.pipe.vae.config.scaling_factor != 0.18215  # set from the latents
    assert load_classifier(models / "shapes-classifier")(torch.zeros(2, 3, 32, 32)).shape == (2, 12)
    for name in ("README.md", "loss_curve.png", "samples.png", "training.json"):
        assert (models / "shapes-sd" / name).stat().st_size > 0, name
    assert "held-out accuracy" in (models / "shapes-classifier" / "README.md").read_text().lower()
    summary = json.loads((run / "train_world.json").read_text())
    assert {s: summary["stages"][s]["steps"] for s in ("vae", "classifier", "denoiser")} == dict.fromkeys(
        ("vae", "classifier", "denoiser"), 20)
    assert set(summary["fidelity"]) >= {"colour", "shape", "both_present"}


@TRAINS
def test_saved_denoiser_is_the_weight_average_not_the_last_weights(smoke):
    models, _ = smoke
    ckpt = torch.load(models / "shapes-sd" / "checkpoints" / "denoiser" / "last.ckpt", weights_only=True)
    unet = StableDiffusionPipeline.from_pretrained(models / "shapes-sd").unet.state_dict()
    name = "conv_in.weight"
    assert torch.equal(unet[name], ckpt["state_dict"][f"unet.{name}"])  # averaged from step 10 on
    assert not torch.allclose(unet[name], ckpt["current_model_state"][f"unet.{name}"])


@TRAINS
def test_checkpoints_load_without_unpickling_code(smoke):
    models, _ = smoke
    for stage in ("vae", "classifier", "denoiser"):
        ckpt = torch.load(models / "shapes-sd" / "checkpoints" / stage / "last.ckpt", weights_only=True)
        assert ckpt["global_step"] == 20 and len(ckpt["stage"]["losses"]) == 20


def test_a_pickled_checkpoint_is_refused(tmp_path):
    unsafe = tmp_path / "last.ckpt"
    torch.save({"global_step": 3, "config": UserError("k", 1, "x")}, unsafe)  # an arbitrary pickled object
    with pytest.raises(UserError, match="pipeline.resume"):
        read_checkpoint(unsafe)


def test_grounding_loss_is_zero_inside_the_masks_and_one_outside():
    masks = torch.zeros(2, 2, 32, 32, dtype=torch.uint8)
    masks[:, 0, :16, :16] = 1  # object 1: top-left quarter; object 2 absent
    probs = torch.zeros(2, 64, 16)  # 8x8 positions, 16 tokens
    cell = torch.arange(64).view(8, 8)
    keep = torch.tensor([True, True])
    colour, shape = WORD_POSITIONS[0]
    probs[:, cell[:4, :4].flatten(), colour] = probs[:, cell[:4, :4].flatten(), shape] = 1
    assert grounding_loss(probs, masks, keep).item() == 0
    probs[1] = 0
    probs[1, cell[4:, 4:].flatten(), colour] = probs[1, cell[4:, 4:].flatten(), shape] = 1
    assert grounding_loss(probs, masks, keep).item() == pytest.approx(0.5)  # one item in, one out
    assert grounding_loss(probs, masks, torch.tensor([True, False])).item() == 0  # the dropped prompt is ignored


@TRAINS
def test_resume_continues_each_stage_from_its_last_checkpoint(smoke, tmp_path):
    models, _ = smoke
    shutil.copytree(models, tmp_path / "models")
    cfg = {**SMOKE, **{s: {**SMOKE[s], "steps": 30} for s in ("vae", "classifier", "denoiser")}}
    job = WorldTraining(str(tmp_path / "models" / "shapes-sd"), str(tmp_path / "models" / "shapes-classifier"), **cfg)
    summary = job.run(tmp_path / "run")
    for stage in ("vae", "classifier", "denoiser"):
        assert (summary["stages"][stage]["start_step"], summary["stages"][stage]["steps"]) == (20, 30)
        assert [step for step, _ in summary["losses"][stage]] == list(range(1, 31))


def test_train_world_config_and_bad_keys(tmp_path, capsys):
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["pipeline=train_world"])
    job = instantiate(cfg.pipeline)
    assert job.model_dir.name == "shapes-sd" and job.classifier_dir.name == "shapes-classifier"
    assert job.eval_cfg.guidance_scale == cfg.model.guidance_scale  # the card judges what model=shapes ships
    with pytest.raises(UserError, match="pipeline.vae"):
        WorldTraining("a", "b", vae={"stepz": 3})
    with pytest.raises(UserError, match="pipeline.denoiser.ema_start"):  # the average would never start
        WorldTraining("a", "b", denoiser={"steps": 100, "ema_start": 100})
    with pytest.raises(UserError, match="pipeline.denoiser.prediction_type"):
        WorldTraining("a", "b", denoiser={"prediction_type": "sample"})
    line = cli_refusal("pipeline=train_world", "logger=none", "pipeline.denoiser.steps=0", out_dir=tmp_path / "run",
                       capsys=capsys)
    assert line.startswith("error: pipeline.denoiser"), line
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):  # a fresh models dir: nothing to check yet
        fresh = compose("config", overrides=["pipeline=train_world", f"paths.models_dir={tmp_path / 'models'}"])
    validate(fresh)


def test_shipped_classifier_names_drawn_scenes():
    classifier = load_classifier(SHAPES_CLASSIFIER)
    rng = np.random.default_rng(123)
    scenes = [sample_scene(rng, 1) for _ in range(300)]
    x = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2)
    truth = [(s.objects[0].colour, s.objects[0].shape) for s in scenes]
    assert np.mean([p == t for p, t in zip(classifier.predict(x), truth)]) >= 0.95
    assert split_label(0) == ("red", "circle")
    assert classifier_features(SHAPES_CLASSIFIER)(x[:2]).shape[2:] == (16, 16)


def test_shipped_pipeline_generates_the_prompted_colours(shapes):
    model = shapes
    trajectory = model.generate("a red circle and a blue square", seed=0, schedule=Uniform(20))
    image = model.decode(trajectory.latents[-1:])
    assert image.shape == (1, 3, 32, 32) and 0 <= image.min() <= image.max() <= 1
    prompts, seeds = zip(*eval_set(8))
    batch = generate_samples(model, prompts, seeds, num_steps=20)
    assert batch.shape == (8, 32, 32, 3)
    assert rates(judge(batch, prompts, load_classifier(SHAPES_CLASSIFIER)))["colour"] >= 0.75


def test_judge_scores_drawn_scenes_right_and_black_wrong():
    classifier = load_classifier(SHAPES_CLASSIFIER)
    rng = np.random.default_rng(7)
    scenes = [sample_scene(rng, n) for n in (1, 2) for _ in range(30)]
    drawn = rates(judge([s.image for s in scenes], [s.prompt for s in scenes], classifier))
    assert {k: drawn[k] for k in ("colour", "both_present", "order")} == dict.fromkeys(
        ("colour", "both_present", "order"), 1.0)  # segmentation-based: exact on drawn scenes
    assert drawn["shape"] >= 0.95 and drawn["exact"] >= 0.95  # the classifier: 98.9 % held-out
    swapped = render([("blue", "square"), ("red", "circle")], rng).image  # right objects, wrong order
    black = np.zeros((32, 32, 3), np.float32)
    wrong = rates(judge([black, black, swapped], ["a red circle", "a red circle and a blue square",
                                                  "a red circle and a blue square"], classifier))
    assert wrong["colour"] == 0.4 and wrong["shape"] == 0.4 and wrong["both_present"] == 0.5
    assert wrong["order"] == 0.0 and wrong["exact"] == 0.0
    assert set(COLOURS) == {"red", "green", "blue", "yellow"}


@pytest.mark.slow
def test_shipped_pipeline_meets_the_fidelity_targets_and_generates_in_under_5_s():
    card = json.loads((SHAPES_SD / "training.json").read_text())
    cfg = card["config"]["evaluation"]
    model = DiffusionModel.from_pretrained(str(SHAPES_SD), scheduler=cfg["scheduler"],
                                           guidance_scale=cfg["guidance_scale"])
    prompts, seeds = zip(*eval_set(cfg["samples"]))
    measured = rates(judge(generate_samples(model, prompts, seeds, cfg["num_steps"]), prompts,
                           load_classifier(SHAPES_CLASSIFIER)))
    assert measured["colour"] >= 0.9 and measured["shape"] >= 0.85 and measured["both_present"] >= 0.8
    assert measured == pytest.approx({k: v for k, v in card["fidelity"].items() if k != "seconds"})
    pipe = StableDiffusionPipeline.from_pretrained(SHAPES_SD)
    pipe.set_progress_bar_config(disable=True)
    pipe("a red circle", num_inference_steps=cfg["num_steps"])  # warm-up
    started = time.perf_counter()
    pipe("a green square and a yellow triangle", num_inference_steps=cfg["num_steps"],
         guidance_scale=cfg["guidance_scale"])
    assert time.perf_counter() - started < 5
