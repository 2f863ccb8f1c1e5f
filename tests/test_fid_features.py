"""similarity.features: single-image FID's feature network fits the model (the Shapes CNN on the Shapes world only,
DINOv2's patch features elsewhere), offline, with a tiny DINOv2 saved to a temporary directory."""

import pytest
import torch
from conftest import CONF, cli_refusal, hydra_job
from hydra.utils import instantiate

from diffexplain.config.options import DINOV2_HUB_ID, FID_FEATURES
from diffexplain.errors import UserError
from diffexplain.similarity import SingleImageFID
from diffexplain.similarity.features import DINOv2Features, dinov2_features
from diffexplain.validation import validate
from diffexplain.world.classifier import ClassifierFeatures


@pytest.fixture(scope="module")
def dinov2_dir(tmp_path_factory):
    """A tiny random DINOv2 (hidden 32, 2 layers, 2 heads, patch 4, image 32) saved with ``save_pretrained``."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          patch_size=4, image_size=32)
    path = tmp_path_factory.mktemp("dinov2")
    Dinov2Model(config).save_pretrained(path)
    return path


def fid_on(*overrides: str, out_dir):
    """``similarity=fid`` instantiated as the job of ``python run.py overrides...`` builds it."""
    with hydra_job("similarity=fid", *overrides, out_dir=out_dir) as cfg:
        return instantiate(cfg.similarity)


def test_dinov2_features_load_from_a_directory_and_lie_on_the_patch_grid(dinov2_dir):
    net = dinov2_features(dinov2_dir)
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 32, 8, 8)
    assert net(torch.rand(1, 3, 50, 70)).shape == (1, 32, 12, 18)  # resized to a multiple of the patch size
    assert net(torch.rand(1, 3, 4, 4)).shape == (1, 32, 2, 2)  # at least 2x2 patches: h*w > 1
    assert not any(p.requires_grad for p in net.parameters())
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64, requires_grad=True)  # run in the network's dtype (float32)
    net(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_sifid_on_dinov2_is_one_for_an_image_with_itself_and_lower_for_another(dinov2_dir):
    fid = SingleImageFID(features="dinov2", dinov2_path=str(dinov2_dir))
    assert isinstance(fid.feature_net, DINOv2Features) and fid.features == "dinov2"
    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 32, 32, generator=gen), torch.rand(2, 3, 32, 32, generator=gen)
    assert torch.allclose(fid(a, a), torch.ones(2), atol=1e-5)
    assert (fid(a, b) < 1).all() and (fid(a, b) < fid(a, a)).all()


def test_auto_picks_the_shapes_cnn_on_the_shapes_models_only(dinov2_dir, tmp_path):
    for model in ("shapes", "shapes_grounded"):  # by config name, whatever its path
        fid = fid_on(f"model={model}", f"similarity.dinov2_path={dinov2_dir}", out_dir=tmp_path / model)
        assert isinstance(fid.feature_net, ClassifierFeatures) and fid.features == "shapes", model
        assert fid_on(f"model={model}", "model.path=/elsewhere/shapes-sd", f"similarity.dinov2_path={dinov2_dir}",
                      out_dir=tmp_path / model).features == "shapes"
    # by path: any model in models_dir/shapes-*
    assert fid_on("model=sd15", "model.path=${paths.models_dir}/shapes-sd", out_dir=tmp_path / "p").features == "shapes"
    for overrides in (["model=tiny"], ["model=sd15"], ["model=tiny", "model.variant=flux"],
                      ["model=shapes", "similarity.features=dinov2"]):
        fid = fid_on(*overrides, f"similarity.dinov2_path={dinov2_dir}", out_dir=tmp_path / "o")
        assert isinstance(fid.feature_net, DINOv2Features) and fid.features == "dinov2", overrides
    # the Shapes CNN on another model: only asked for by name
    fid = fid_on("model=sd15", "similarity.features=shapes", out_dir=tmp_path / "s")
    assert isinstance(fid.feature_net, ClassifierFeatures) and fid.features == "shapes"


def test_the_config_documents_every_value_and_the_default_hub_id():
    text = (CONF / "similarity" / "fid.yaml").read_text()
    assert f"dinov2_path: {DINOV2_HUB_ID} " in text and "features: auto " in text
    assert all(name in text.split("features: auto", 1)[1].splitlines()[0] for name in FID_FEATURES)


def test_validation_never_falls_back_to_the_shapes_cnn_and_names_the_key(dinov2_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with hydra_job("model=tiny", "similarity=fid", out_dir=tmp_path) as cfg:
        with pytest.raises(UserError) as err:
            validate(cfg)
    assert err.value.key == "similarity.dinov2_path" and "similarity.features=shapes" in str(err.value)
    for overrides in ([f"similarity.dinov2_path={dinov2_dir}"], ["similarity.features=shapes"]):
        with hydra_job("model=tiny", "similarity=fid", *overrides, out_dir=tmp_path) as cfg:
            validate(cfg)
    with hydra_job("model=shapes", "similarity=fid", out_dir=tmp_path) as cfg:  # the Shapes world needs no DINOv2
        validate(cfg)
    with pytest.raises(UserError) as err:  # and at load time, one error naming the key
        dinov2_features(DINOV2_HUB_ID)
    assert err.value.key == "similarity.dinov2_path" and "\n" not in str(err.value)


def test_an_unknown_features_value_is_refused_in_one_line(tmp_path, capsys):
    line = cli_refusal("similarity=fid", "similarity.features=inception", out_dir=tmp_path / "run", capsys=capsys)
    assert "similarity.features" in line and "dinov2" in line
    with pytest.raises(UserError) as err:
        SingleImageFID(features="inception")
    assert err.value.key == "similarity.features"
