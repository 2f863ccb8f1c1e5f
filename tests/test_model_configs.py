"""The diffusion-transformer model configs (conf/model/{sd3,sd35,flux_schnell,flux_dev,pixart_sigma}.yaml) compose and
pass validation as written, without loading (or downloading) any weights."""

import pytest
from conftest import hydra_job
from omegaconf import OmegaConf

from diffexplain.validation import SPECS, model_info, validate

TARGET = "diffexplain.models.DiffusionModel.from_pretrained"
# name: (hub id, guidance_scale, the keys that differ per family)
CONFIGS = {
    "sd3": ("stabilityai/stable-diffusion-3-medium-diffusers", 7.0, {"max_sequence_length": None}),
    "sd35": ("stabilityai/stable-diffusion-3.5-large", 3.5, {"max_sequence_length": None}),
    "flux_schnell": ("black-forest-labs/FLUX.1-schnell", 0.0, {"true_cfg_scale": 1.0, "max_sequence_length": 256}),
    "flux_dev": ("black-forest-labs/FLUX.1-dev", 3.5, {"true_cfg_scale": 1.0, "max_sequence_length": 512}),
    "pixart_sigma": ("PixArt-alpha/PixArt-Sigma-XL-2-1024-MS", 4.5, {"max_sequence_length": None}),
}


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, online: a hub id is then accepted and checked when the model loads (offline,
    a hub id not in the cache is refused — tests/test_validation.py)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))


def composed_and_validated(tmp_path, *overrides: str) -> dict:
    """``python run.py pipeline=generate overrides...`` composed as the job sees it and validated; the model node."""
    with hydra_job("pipeline=generate", "logger=none", *overrides, out_dir=tmp_path / "run") as cfg:
        (tmp_path / "run").mkdir(parents=True, exist_ok=True)
        validate(cfg)
        return OmegaConf.to_container(cfg.model, resolve=True)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_transformer_configs_compose_and_validate(name, tmp_path, empty_hub_cache):
    path, guidance, extra = CONFIGS[name]
    model = composed_and_validated(tmp_path, f"model={name}")
    assert model["_target_"] == TARGET and model["path"] == path
    assert set(model) - {"_target_"} <= set(SPECS[TARGET]), "a key validation does not know"
    assert model["dtype"] == "bfloat16" and model["scheduler"] is None and model["scheduler_config"] == {}
    assert model["eta"] == 0.0 and model["load_kwargs"] == {} and model["resolution"] == 1024
    assert model["guidance_scale"] == guidance
    assert {key: model[key] for key in extra} == extra
    assert "true_cfg_scale" in model or not name.startswith("flux")  # true CFG is Flux's alone
    assert model_info(model) is None  # a hub id not in the cache: nothing to read until it loads


def test_sd3_without_t5_composes_and_validates(tmp_path, empty_hub_cache):
    """The override the sd3 config's comment suggests to save T5's memory (``++``: ``load_kwargs: {}`` takes no new
    keys otherwise)."""
    model = composed_and_validated(tmp_path, "model=sd3",
                                   "++model.load_kwargs={text_encoder_3: null, tokenizer_3: null}")
    assert model["load_kwargs"] == {"text_encoder_3": None, "tokenizer_3": None}
