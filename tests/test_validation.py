"""The validation pass: every shipped config is valid, every spec knows every key, and specs mirror the classes."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from conftest import ROOT
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
def test_every_shipped_choice_validates_and_has_a_spec(group, name, tmp_path):
    from PIL import Image

    for label in ("cat", "dog"):  # the smallest class folder an imagefolder accepts
        (tmp_path / label).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / label / "0.png")
    extra = {"coco_captions": ["data.prompt_file=README.md"], "report": [f"sweep_dir={ROOT}"],
             "imagefolder": [f"data.root={tmp_path}"], "hf": [f"classifier.path={tmp_path}"]}.get(name, [])
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

    assert set(rise.MASKS) == {"pixel", "grid"} and set(outcomes.TARGETS) == {"output", "paper", "next_latent", "x0", "final"}
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
