"""The validation pass: every shipped config is valid, every spec knows every key, and specs mirror the classes."""

from pathlib import Path

import pytest
from conftest import ROOT
from hydra import compose, initialize_config_dir

from diffexplain.errors import UserError
from diffexplain.validation import SPECS, validate

CONF = Path(ROOT) / "conf"
GROUPS = ["model", "data", "explainer", "similarity", "schedule", "runner", "logger", "pipeline", "classifier"]
OPTIONAL = {"runner": {"gpu"}}  # needs a visible GPU


def choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def composed(*overrides: str):
    """The config as a job sees it (its output directory: a fresh temporary one)."""
    import tempfile

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[f"paths.output_dir={tempfile.mkdtemp()}", *overrides])


@pytest.mark.parametrize("group, name", [(g, c) for g in GROUPS for c in choices(g) if c not in OPTIONAL.get(g, ())])
def test_every_shipped_choice_validates_and_has_a_spec(group, name, tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # the hub models (sd15, ...) are downloaded online (refused offline)

    for label in ("cat", "dog"):  # the smallest class folder an imagefolder accepts
        (tmp_path / label).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / label / "0.png")
    extra = {"coco_captions": ["data.prompt_file=README.md"], "report": [f"sweep_dir={ROOT}"],
             "imagefolder": [f"data.root={tmp_path}"], "hf": [f"classifier.path={tmp_path}"],
             "concept_attention": ["model=tiny", "model.variant=flux"]}.get(name, [])  # joint attention only
    cfg = composed(f"{group}={name}", *extra)
    node = cfg[group] if group in cfg else None
    if node is not None and "_target_" in node:
        assert node._target_ in SPECS, f"{group}={name}: no validation spec for {node._target_}"
    validate(cfg)


def test_a_preset_overrides_the_main_config_and_the_command_line_overrides_both():
    cfg = composed("experiment=evidence")
    assert cfg.evaluate.sanity is True and cfg.evaluate.sanity_stages == "full" and cfg.output.figures == 2
    assert composed("experiment=evidence", "evaluate.sanity=false").evaluate.sanity is False
    assert composed("experiment=evidence").pipeline.evaluate.sanity is True  # the job node follows evaluate:


@pytest.mark.parametrize("experiment", choices("experiment"))
def test_every_preset_validates(experiment):
    validate(composed(f"experiment={experiment}"))


def test_unknown_keys_name_the_nearest_valid_one():
    cfg = composed("+explainer.n_mask=3")
    with pytest.raises(UserError, match="nearest: explainer.n_masks"):
        validate(cfg)


def test_specs_mirror_the_classes_enumerations():
    from diffexplain.explainers import captum_base, rise
    from diffexplain.models import outcomes

    assert (set(rise.MASKS) == {"pixel", "grid"}
            and set(outcomes.TARGETS) == {"output", "paper", "next_latent", "x0", "final"})
    spec = SPECS["diffexplain.explainers.RISE"]
    for value in outcomes.TARGETS:
        spec["target"]("explainer.target", value)
    for value in rise.SCORES:
        spec["score"]("explainer.score", value)
    for value in captum_base.TARGETS + captum_base.BASELINES:
        key = "target" if value in captum_base.TARGETS else "baseline"
        SPECS["diffexplain.explainers.IntegratedGradientsExplainer"][key](f"explainer.{key}", value)


def test_the_fast_gpu_count_agrees_with_torch():
    import torch

    from diffexplain.validation import visible_gpus

    assert visible_gpus() == (torch.cuda.device_count() if torch.cuda.is_available() else 0)


# -- one source for every option ---------------------------------------------------------------------------------------
def test_the_classes_check_against_the_options_module():
    from diffexplain.config import options
    from diffexplain.explainers import cam, captum_base, gradient_targets, integrated_gradients, lime, rise
    from diffexplain.models import forward_process, loading, outcomes, tiny
    from diffexplain.similarity import ssim

    assert rise.MASKS is options.RISE_MASKS and rise.SCORES is options.RISE_SCORES
    assert rise.ESTIMATORS is options.RISE_ESTIMATORS and outcomes.TARGETS is options.OUTCOME_TARGETS
    assert captum_base.TARGETS is options.CAPTUM_TARGETS and captum_base.BASELINES is options.CAPTUM_BASELINES
    assert gradient_targets.TARGETS is options.GRADIENT_TARGETS and cam.UPSAMPLE is options.CAM_UPSAMPLE
    assert cam.MODULE_SETS is options.CAM_MODULE_SETS and integrated_gradients.METHODS is options.IG_METHODS
    assert tuple(lime.SUPERPIXELS) == options.LIME_SUPERPIXELS and tuple(loading.DTYPES) == options.DTYPES
    assert tiny.VARIANTS is options.MODEL_VARIANTS and forward_process.BETA_SCHEDULES is options.BETA_SCHEDULES
    assert ssim.VARIANTS is options.SSIM_VARIANTS and ssim.window_size(1.5) == 11


def test_the_static_scheduler_list_is_diffusers_own():
    from diffusers.schedulers import KarrasDiffusionSchedulers

    from diffexplain.config.options import SCHEDULER_CLASSES, SCHEDULERS_NOT_OFFERED

    assert SCHEDULER_CLASSES == tuple(s.name for s in KarrasDiffusionSchedulers if s.name not in SCHEDULERS_NOT_OFFERED)


def test_the_world_training_spec_mirrors_its_dataclasses():
    """Read the dataclasses' fields from the source (no torch import) and compare with the validation spec."""
    import ast

    from diffexplain.validation import WORLD_TRAINING

    src = Path(ROOT) / "src" / "diffexplain" / "pipelines" / "world_training"
    fields = {}
    for name in ("stages.py", "job.py"):
        for node in ast.parse((src / name).read_text()).body:
            if isinstance(node, ast.ClassDef) and node.name.endswith("Config"):
                fields[node.name] = {s.target.id for s in node.body if isinstance(s, ast.AnnAssign)}
            if isinstance(node, ast.ClassDef) and node.name == "WorldTraining":
                init = next(f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
                fields["WorldTraining"] = {a.arg for a in init.args.args[1:]}
    assert fields["WorldTraining"] == set(WORLD_TRAINING)
    for key, cls in (("vae", "VaeConfig"), ("classifier", "ClassifierConfig"), ("denoiser", "DenoiserConfig"),
                     ("evaluation", "EvalConfig")):
        with pytest.raises(UserError, match="not a key"):
            WORLD_TRAINING[key](f"pipeline.{key}", {"no_such_key": 1})
        for field in fields[cls]:  # every field is a key of the spec (a bad value is a UserError, not "not a key")
            try:
                WORLD_TRAINING[key](f"pipeline.{key}", {field: object()})
            except UserError as e:
                assert "not a key" not in str(e), (cls, field)


@pytest.mark.parametrize("variant", ["sd", "sd2", "sdxl", "shapes"])
def test_unet_module_names_from_the_config_match_the_built_unet(variant):
    import json

    from diffusers import UNet2DConditionModel

    from diffexplain.config.options import TINY_UNETS
    from diffexplain.validation import may_match, unet_module_names

    config = json.loads((Path(ROOT) / "models/shapes-sd/unet/config.json").read_text()) if variant == "shapes" \
        else dict(TINY_UNETS[variant])
    real = [n for n, _ in UNet2DConditionModel.from_config(config).named_modules() if n]
    names = unet_module_names(config)
    for name in real:  # every real module is listed, or lies below an open entry
        parts = name.split(".")
        assert name in names or any(names.get(".".join(parts[:i])) for i in range(1, len(parts))), name
    assert set(names) <= set(real)
    assert may_match("up_blocks.*.attentions.*.transformer_blocks.*.attn2", names) == any(
        n.endswith("attn2") for n in real)
    assert not may_match("up_block.*.resnets.*", names) and not may_match("mid_block.resnets.7", names)


# -- refusals from files, before torch loads -------------------------------------------------------------------------
SHAPES_SD = Path(ROOT) / "models" / "shapes-sd"


def model_copy(tmp_path, unet_files: dict) -> Path:
    """A copy of models/shapes-sd (links) whose unet/ holds ``unet_files`` ({name: bytes})."""
    root = tmp_path / "model"
    root.mkdir(parents=True)
    for part in SHAPES_SD.iterdir():
        if part.name != "unet":
            (root / part.name).symlink_to(part)
    (root / "unet").mkdir()
    for name, data in unet_files.items():
        (root / "unet" / name).write_bytes(data)
    return root


def refused(*overrides) -> UserError:
    with pytest.raises(UserError) as info:
        validate(composed(*overrides))
    return info.value


def test_a_model_path_that_is_missing_a_file_or_incomplete_is_refused(tmp_path):
    assert refused("model.path=/no/such/model").key == "model.path"
    assert "not a file" in str(refused(f"model.path={ROOT}/README.md"))
    config = (SHAPES_SD / "unet" / "config.json").read_bytes()
    weights = (SHAPES_SD / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    no_config = model_copy(tmp_path / "a", {"diffusion_pytorch_model.safetensors": weights})
    assert "unet/config.json is missing" in str(refused(f"model.path={no_config}"))
    for i, cut in enumerate((len(weights) - 1, 100)):  # in the data, in the header
        truncated = model_copy(tmp_path / f"b{i}", {"config.json": config,
                                                    "diffusion_pytorch_model.safetensors": weights[:cut]})
        assert "is truncated" in str(refused(f"model.path={truncated}"))
    lfs = model_copy(tmp_path / "c", {"config.json": config,
                                      "diffusion_pytorch_model.safetensors": b"version https://git-lfs.github.com/spec/v1\n"})
    assert "not a safetensors file" in str(refused(f"model.path={lfs}"))
    (tmp_path / "d").mkdir()
    assert "model_index.json" in str(refused(f"model.path={tmp_path / 'd'}"))


def test_a_hub_id_not_in_the_cache_is_refused_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    err = refused("model=sd15")
    assert err.key == "model.path" and "HF_HUB_OFFLINE=1" in str(err)


@pytest.mark.parametrize("overrides, key, text", [
    (["schedule=custom", "schedule.timesteps=[1,500,999]"], "schedule.timesteps", "strictly decreasing"),
    (["explainer=occlusion", "explainer.window=17"], "explainer.window", "[1, 16]"),
    (["model=tiny", "explainer=occlusion", "explainer.window=9"], "explainer.window", "[1, 8]"),
    (["similarity.kernel_size=10"], "similarity.kernel_size", "odd"),
    (["similarity.kernel_size=13"], "similarity.kernel_size", "11 or null"),
    (["similarity=luminance", "similarity.variant=authors"], "similarity.variant", "textbook"),
    (["+model.resolution=33"], "model.resolution", "multiple of the VAE's downsampling factor 2"),
    (["model.scheduler=NopeScheduler"], "model.scheduler", "EulerDiscreteScheduler"),
    (["explainer=cam", "explainer.modules=up_block.*.resnets.*"], "explainer.modules", "up_blocks.0"),
    (["model=tiny", "model.variant=sdxl", "explainer=cam", "explainer.modules=down_blocks.0.attentions.0"],
     "explainer.modules", "matching UNet modules"),
    (["similarity=fid", "similarity.feature_net.path=/no/such/classifier"], "similarity.feature_net.path",
     "config.json"),
    (["data.num_objects=1", "data.offset=12"], "data.offset", "[0, 11]"),
    (["data.offset=84"], "data.offset", "[0, 83]"),
    (["pipeline=train_world", "+pipeline.vae.nope=1"], "pipeline.vae.nope", "not a key"),
    (["pipeline=train_world", "pipeline.denoiser.prediction_type=x0"], "pipeline.denoiser.prediction_type", "epsilon"),
    (["pipeline=train_world", "pipeline.denoiser.ema_start=5000"], "pipeline.denoiser.ema_start", "2800"),
    (["pipeline=train_world", "pipeline.vae.norm_num_groups=5"], "pipeline.vae.norm_num_groups", "GroupNorm"),
])
def test_refusals_that_read_only_the_config_and_files(overrides, key, text):
    err = refused(*overrides)
    assert err.key == key and text in str(err), str(err)


def test_valid_neighbours_of_the_refusals_pass():
    for overrides in (["schedule=custom", "schedule.timesteps=[999,500,1]"],
                      ["explainer=occlusion", "explainer.window=16"],
                      ["similarity.kernel_size=13", "similarity.variant=authors"], ["+model.resolution=64"],
                      ["model.scheduler=KDPM2DiscreteScheduler"], ["data.num_objects=1", "data.offset=11"],
                      ["explainer=cam", "explainer.modules=up_blocks.*.attentions.*.transformer_blocks.*.attn2"],
                      ["model=tiny", "model.variant=sdxl", "explainer=cam",
                       "explainer.modules=down_blocks.1.attentions.0"]):
        validate(composed(*overrides))


def test_validation_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom hydra import compose, initialize_config_dir\n"
            "from diffexplain.validation import validate\n"
            f"with initialize_config_dir(config_dir={str(CONF)!r}, version_base='1.3'):\n"
            "    cfg = compose('config', overrides=['explainer=cam', 'schedule=custom', 'similarity=fid'])\n"
            "validate(cfg); assert 'torch' not in sys.modules and 'diffusers' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# -- the command line's refusals without a job -------------------------------------------------------------------------
def test_an_unwritable_log_file_is_one_line():
    import logging.config

    from diffexplain.cli import hydra_message

    try:
        try:
            raise PermissionError(13, "Permission denied", "/out/run.log")
        except PermissionError as e:
            raise ValueError("Unable to configure handler 'file'") from e
    except ValueError as exc:
        message = hydra_message(exc)
    assert message.startswith("cannot write the job's log /out/run.log: Permission denied"), message
    assert logging.config  # the ValueError above is the one logging.config raises


def test_a_refused_sweep_leaves_nothing(tmp_path):
    from diffexplain import cli

    sweep = tmp_path / "multirun" / "2026-01-01" / "10-00-00"
    cli._Sweep.dir, cli._Sweep.created = sweep, tmp_path / "multirun"
    try:
        sweep.mkdir(parents=True)
        (sweep / "multirun.yaml").write_text("{}")
        cli.remove_refused_sweep()
        assert not (tmp_path / "multirun").exists() and tmp_path.is_dir()
    finally:
        cli._Sweep.dir = cli._Sweep.created = None
