"""pipeline=noised_classifier (paper B): the Shapes classifier on noised scenes, steep-rise detection, Captum maps on a
classifier with a known receptive field, the HF/image-folder path end to end, and one-line errors for bad inputs."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ROOT, cli_refusal, run_cli, run_job
from PIL import Image
from torch import nn

from diffexplain.classifiers import ShapesImageClassifier
from diffexplain.classifiers.labels import resolve_label
from diffexplain.errors import UserError
from diffexplain.explainers.classifier_attribution import METHODS, ClassifierAttribution
from diffexplain.items import image_folder_items, shapes_image_items
from diffexplain.metrics.curves import steep_rise, sustained_above
from diffexplain.metrics.outline import outline_regions, region_mass
from diffexplain.pipelines.noised_classifier import COLUMNS, NoisedClassifierPipeline

NUM_CLASSES = 12
CURVES_ONLY = {"methods": []}


@pytest.fixture(scope="module")
def shapes_classifier():
    return ShapesImageClassifier.from_pretrained(str(ROOT / "models" / "shapes-classifier"))


def test_shapes_classifier_is_right_on_clean_scenes_and_at_chance_on_pure_noise(shapes_classifier):
    items = shapes_image_items(per_class=10, seed=3)
    clean = shapes_classifier.preprocess([it.load()[0] for it in items])
    truth = torch.tensor([shapes_classifier.class_index(it.label) for it in items])
    with torch.no_grad():
        clean_acc = (shapes_classifier(clean).argmax(-1) == truth).float().mean().item()
    assert clean_acc >= 0.95

    pipeline = NoisedClassifierPipeline(noise={"timesteps": [0, 999], "repeats": 2}, attribute=CURVES_ONLY)
    df = pd.DataFrame([r for it in items for r in pipeline.run(shapes_classifier, it).rows])
    mean = df.groupby(["metric", "t"])["value"].mean()
    assert mean["accuracy", 0] >= 0.95                      # t = 0: ᾱ = 0.9999, a clean scene
    assert abs(mean["softmax_true", 999] - 1 / NUM_CLASSES) < 0.03  # x_999 carries no class: balanced classes → 1/12
    assert abs(mean["accuracy", 999] - 1 / NUM_CLASSES) < 0.06
    per_class = df[(df.metric == "softmax_true") & (df.t == 999)].groupby("class")["value"].mean()
    assert per_class.max() < 0.6                            # no class survives pure noise


def test_same_seed_same_rows_and_noise_depends_on_the_image(shapes_classifier):
    items = shapes_image_items(per_class=2, seed=0, classes=["blue square"])
    pipeline = NoisedClassifierPipeline(noise={"timesteps": 10, "repeats": 2}, attribute=CURVES_ONLY)
    first = [r["value"] for r in pipeline.run(shapes_classifier, items[0]).rows]
    again = [r["value"] for r in NoisedClassifierPipeline(noise={"timesteps": 10, "repeats": 2},
                                                          attribute=CURVES_ONLY).run(shapes_classifier, items[0]).rows]
    assert first == again
    other_seed = NoisedClassifierPipeline(seed=1, noise={"timesteps": 10, "repeats": 2}, attribute=CURVES_ONLY)
    assert [r["value"] for r in other_seed.run(shapes_classifier, items[0]).rows] != first


@pytest.mark.parametrize("midpoint", [250, 400, 700])
def test_steep_rise_finds_a_sigmoids_midpoint(midpoint):
    t = np.linspace(0, 999, 100).round()
    spacing = t[1] - t[0]
    curve = 1 / (1 + np.exp((t - midpoint) / 40))          # rises as t falls, steepest at the midpoint
    assert abs(steep_rise(t, curve, sigma=0) - midpoint) <= spacing / 2 + 1
    noisy = curve + np.random.default_rng(0).normal(0, 0.03, (16, len(t)))  # 16 noisy images
    assert abs(steep_rise(t, noisy.mean(0), sigma=2.0) - midpoint) <= 2 * spacing
    per_curve = steep_rise(t, noisy, sigma=2.0)
    assert per_curve.shape == (16,) and np.median(np.abs(per_curve - midpoint)) <= 3 * spacing
    assert abs(sustained_above(t, curve, 0.5) - midpoint) <= spacing


def test_sustained_above_needs_the_clean_end_above_the_level():
    t = np.array([0, 100, 200, 300])
    assert sustained_above(t, np.array([0.9, 0.8, 0.2, 0.7]), 0.5) == 100   # the blip at 300 does not count
    assert np.isnan(sustained_above(t, np.array([0.4, 0.9, 0.9, 0.9]), 0.5))


class TopLeftClassifier(nn.Module):
    """A random CNN that only sees the top-left quadrant of its input."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 8, 3, padding=1), nn.Tanh(),
                                 nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 4))

    def forward(self, x):
        h, w = x.shape[-2:]
        return self.net(x[..., : h // 2, : w // 2])


def test_captum_maps_put_their_mass_where_the_classifier_looks():
    model = TopLeftClassifier().eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    maps = ClassifierAttribution(METHODS, ig_steps=16, shap_samples=8, window=4, stride=2)(
        model, x, 1, torch.Generator().manual_seed(0))
    quadrant = torch.zeros(32, 32, dtype=torch.bool)
    quadrant[:16, :16] = True
    for method, m in maps.items():
        assert m.shape == (2, 32, 32)
        share = (m[:, quadrant].sum(1) / m.flatten(1).sum(1))
        # gradients are exactly zero outside; an occlusion patch straddling the edge reaches 2 px beyond it
        assert (share > (0.999 if method != "occlusion" else 0.85)).all(), (method, share)


def test_outline_band_and_mass_ratio():
    mask = np.zeros((16, 16), bool)
    mask[4:12, 4:12] = True
    regions = outline_regions(mask, band=1)
    assert regions["outline"].sum() == 10 * 10 - 6 * 6 and regions["interior"].sum() == 36
    assert not (regions["outline"] & regions["interior"]).any() and not (regions["background"] & mask).any()
    assert (regions["edge"] | regions["interior"] == mask).all() and regions["edge"].sum() == 64 - 36
    uniform = region_mass(np.ones((16, 16)), regions)
    assert uniform["outline_vs_interior"] == pytest.approx(1.0) and uniform["mass_object"] == pytest.approx(64 / 256)
    edge = region_mass(regions["outline"] * 2.0 + regions["interior"] * 1.0, regions)
    assert edge["outline_vs_interior"] == pytest.approx(2.0) and edge["edge_vs_interior"] == pytest.approx(2.0)
    assert edge["mass_background"] == 0
    assert "object_vs_background" not in edge  # no mass on the background: the ratio is undefined, not infinite
    inside = region_mass(mask * 3.0 + 1.0, regions)
    assert inside["object_vs_background"] == pytest.approx(4.0)


def test_label_lookup_by_name_synonym_and_map():
    labels = ["Persian cat", "Siamese cat, Siamese", "tiger, Panthera tigris", "tiger cat"]
    assert resolve_label("Persian cat", labels) == 0
    assert resolve_label("siamese_cat", labels) == 1
    assert resolve_label("tiger", labels) == 2
    assert resolve_label("n02123394", labels, {"n02123394": "Persian cat"}) == 0
    assert resolve_label("n02129604", labels, {"n02129604": 2}) == 2
    with pytest.raises(UserError, match="classifier.label_map") as err:
        resolve_label("n02124075", labels)
    assert "\n" not in str(err.value)


def test_image_folder_items_are_stable_and_sorted(tmp_path):
    for cls in ("dog", "cat"):
        (tmp_path / cls / "sub").mkdir(parents=True)
        for k in range(3):
            Image.new("RGB", (8, 8), (k * 40, 0, 0)).save(tmp_path / cls / ("sub" if k == 2 else "") / f"{k}.png")
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    items = image_folder_items(str(tmp_path), per_class=2)
    assert [it.label for it in items] == ["cat", "cat", "dog", "dog"]
    assert [it.image_id for it in items] == [it.image_id for it in image_folder_items(str(tmp_path), per_class=2)]
    assert len({it.image_id for it in items}) == 4 and all("/" not in it.image_id for it in items)
    image, mask = items[0].load()
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8 and mask is None


def tiny_hf_classifier(path, labels=("cat", "dog")):
    """A random tiny ResNet with a ConvNeXt image processor (resize 32, ImageNet normalisation), saved to ``path``."""
    from transformers import ConvNextImageProcessorPil, ResNetConfig, ResNetForImageClassification

    torch.manual_seed(0)
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                          id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    ResNetForImageClassification(config).save_pretrained(path)
    ConvNextImageProcessorPil(size={"shortest_edge": 32}, image_mean=[0.485, 0.456, 0.406],
                              image_std=[0.229, 0.224, 0.225]).save_pretrained(path)
    return str(path)


def image_folder(root, classes=("cat", "dog"), per_class=2):
    rng = np.random.default_rng(0)
    for cls in classes:
        (root / cls).mkdir(parents=True)
        for k in range(per_class):
            Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / cls / f"img{k}.png")
    return str(root)


FAST = ("pipeline.noise.timesteps=12", "pipeline.noise.repeats=2", "pipeline.attribute.ig_steps=4",
        "pipeline.attribute.shap_samples=2", "pipeline.attribute.shap_baselines=2", "pipeline.curve.bootstrap=50")


def test_hf_classifier_on_an_image_folder_end_to_end(tmp_path):
    model = tiny_hf_classifier(tmp_path / "tiny")
    data = image_folder(tmp_path / "images")
    out = tmp_path / "run"
    run_job("pipeline=noised_classifier", "classifier=hf", f"classifier.path={model}", "data=imagefolder",
            f"data.root={data}", *FAST, "logger=none", out_dir=out)
    df = pd.read_parquet(out / "results.parquet")
    assert list(df.columns) == list(COLUMNS)
    assert set(df.metric) == {"softmax_true", "accuracy", "steep_rise_t"}  # no masks: no outline rows
    assert sorted(df["class"].unique()) == ["cat", "dog"] and df.image_id.nunique() == 4
    soft = df[df.metric == "softmax_true"]
    assert soft.t.nunique() == 12 and soft.value.between(0, 1).all()
    info = json.loads((out / "run.json").read_text())
    assert info["choices"]["classifier"] == "hf" and info["classifier"]["num_labels"] == 2
    assert info["timesteps"] == sorted(info["timesteps"]) and info["timesteps"][-1] == 999
    with np.load(out / "heatmaps.npz") as npz:
        methods = {k.split("/")[1] for k in npz.files}
        assert methods == set(METHODS)
        assert all(npz[k].shape == (32, 32) for k in npz.files)
    classes = pd.read_csv(out / "tables" / "classes.csv")
    assert list(classes["class"]) == ["cat", "dog"] and classes.steep_rise_t.between(0, 999).all()
    assert (out / "figures" / "softmax_curves.png").is_file() and (out / "figures" / "accuracy.png").is_file()
    assert len(list((out / "figures").glob("class_*.png"))) == 2


@pytest.mark.slow  # ~35 s on a shared 2-core CPU (W&B offline run included)
def test_shapes_defaults_write_curves_maps_figures_and_wandb(tmp_path):
    out = tmp_path / "run"
    res = run_cli("pipeline=noised_classifier", "data.per_class=1", "data.classes=[red circle,blue triangle]",
                  *FAST, f"hydra.run.dir={out}")
    assert res.returncode == 0, res.stderr[-3000:]
    df = pd.read_parquet(out / "results.parquet")
    mass = df[df.metric == "mass_object"]
    assert set(mass.method) == set(METHODS)
    assert set(mass.position) == {"steep_rise-10", "steep_rise+0", "steep_rise+10", "t=0", "t=900"}
    assert df[df.metric.str.startswith("mass_")].value.between(0, 1).all()
    assert set(pd.read_csv(out / "tables" / "outline.csv").method) == set(METHODS)
    for name in ("softmax_curves", "accuracy", "outline_vs_interior", "class_red_circle-s0-000"):
        assert (out / "figures" / f"{name}.png").is_file(), name
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    media = run_dir / "files" / "media"
    assert list((media / "images").rglob("*.png"))
    assert {p.name.split("_")[0] for p in (media / "table").rglob("*.table.json")} >= {"classes", "curves", "outline"}


@pytest.mark.parametrize("overrides, message", [
    (("data=imagefolder", "data.root={tmp}/missing"), "error: data.root='{tmp}/missing' is invalid: an existing dir"),
    (("data=imagefolder", "data.root={tmp}/empty"), "error: data.root='{tmp}/empty' is invalid: a directory with one"),
    (("data=imagefolder", "data.root={tmp}/no_images"), "error: data.root='{tmp}/no_images' is invalid: a class"),
    (("data=imagefolder", "data.root={tmp}/broken"), "error: data.root='{tmp}/broken/cat/x.png' is invalid: a"),
    (("data=imagefolder", "data.root={tmp}/lions"), "error: classifier.label_map='lion' is invalid: a class the"),
    (("pipeline.noise.repeats=0",), "error: pipeline.noise.repeats=0 is invalid: an integer >= 1"),
    (("pipeline.attribute.methods=[lime]",), "error: pipeline.attribute.methods=['lime'] is invalid: a list of"),
    (("pipeline.noise.schedule=cosine",), "error: pipeline.noise.schedule='cosine' is invalid: one of ['linear'"),
    (("classifier=hf", "classifier.path={tmp}/nothing_here"), "error: classifier.path='{tmp}/nothing_here' is invalid"),
])
def test_bad_input_prints_one_line_and_exits_2(bad_inputs, tmp_path, capsys, overrides, message):
    root, model = bad_inputs
    hf = () if any(o.startswith("classifier=") for o in overrides) or "data=imagefolder" not in overrides else (
        "classifier=hf", f"classifier.path={model}")
    line = cli_refusal("pipeline=noised_classifier", *[o.format(tmp=root) for o in overrides], *hf, "logger=none",
                       out_dir=tmp_path / "run", capsys=capsys)
    assert line.startswith(message.format(tmp=root)), line


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    """Image folders that are not what a user meant, and a tiny HF classifier: (root, classifier path)."""
    root = tmp_path_factory.mktemp("bad-inputs")
    (root / "empty").mkdir()
    (root / "no_images" / "cat").mkdir(parents=True)
    (root / "no_images" / "cat" / "notes.txt").write_text("no images here")
    (root / "broken" / "cat").mkdir(parents=True)
    (root / "broken" / "cat" / "x.png").write_bytes(b"not a png")
    image_folder(root / "lions", classes=("lion",), per_class=1)
    return root, tiny_hf_classifier(root / "tiny")


def test_a_cached_hub_classifiers_labels_are_checked_before_it_loads(tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants

    snapshot = tmp_path / "hf" / "hub" / "models--acme--tiny" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc")
    (snapshot / "config.json").write_text(json.dumps({"id2label": {"0": "cat", "1": "dog"}}))  # no weights: not loaded
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))  # read at import
    line = cli_refusal("pipeline=noised_classifier", "classifier=hf", "classifier.path=acme/tiny", "data=imagefolder",
                       f"data.root={image_folder(tmp_path / 'images', classes=('cat', 'lion'), per_class=1)}",
                       "logger=none", out_dir=tmp_path / "run", capsys=capsys)
    assert line == ("error: classifier.label_map='lion' is invalid: a class the classifier knows: 'lion' "
                    "is none of its 2 labels ('cat', 'dog'); map it with "
                    "classifier.label_map='{lion: <label name or id>}'")
