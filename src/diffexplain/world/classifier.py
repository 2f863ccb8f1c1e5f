"""A small CNN that names the colour and shape of a single-object Shapes scene.

It judges generated samples (the shape of each object, isolated on black) and serves as the feature network of
single-image FID (``similarity=fid similarity.feature_net='{_target_: diffexplain.world.classifier.classifier_features,
path: ${paths.models_dir}/shapes-classifier}'``).
"""

from __future__ import annotations

import json
from itertools import product
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from diffexplain.errors import UserError
from diffexplain.world.scenes import COLOURS, SHAPES

CLASSES: tuple[tuple[str, str], ...] = tuple(product(COLOURS, SHAPES))  # label = colour index * 3 + shape index
WEIGHTS, CONFIG = "model.safetensors", "config.json"


def label_of(colour: str, shape: str) -> int:
    """The class index of (colour, shape)."""
    return CLASSES.index((colour, shape))


def split_label(label: int) -> tuple[str, str]:
    """The (colour, shape) of a class index."""
    return CLASSES[int(label)]


def _conv(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1), nn.GroupNorm(8, c_out), nn.SiLU())


class ShapesClassifier(nn.Module):
    """32×32 RGB in [0, 1] → 12 logits (colour × shape); ``features`` are its 16×16 conv features."""

    def __init__(self, channels: tuple[int, int, int] = (32, 32, 64)):
        super().__init__()
        c1, c2, c3 = channels
        self.config = {"channels": [c1, c2, c3]}
        self.stem = nn.Sequential(_conv(3, c1, 1), _conv(c1, c2, 2))  # 16×16
        self.head = nn.Sequential(_conv(c2, c3, 2), _conv(c3, c3, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(c3, len(CLASSES)))

    def features(self, x: Tensor) -> Tensor:
        """[B, 3, 32, 32] in [0, 1] → [B, channels[1], 16, 16]."""
        return self.stem(x * 2 - 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    @torch.no_grad()
    def predict(self, x: Tensor) -> list[tuple[str, str]]:
        """The (colour, shape) each image most likely shows."""
        return [split_label(i) for i in self(x).argmax(-1).tolist()]

    @torch.no_grad()
    def shape_probs(self, x: Tensor) -> Tensor:
        """[B, len(SHAPES)] shape probabilities, summed over colours."""
        return self(x).softmax(-1).view(-1, len(COLOURS), len(SHAPES)).sum(1)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, path / WEIGHTS)
        (path / CONFIG).write_text(json.dumps({**self.config, "classes": [list(c) for c in CLASSES]}, indent=2) + "\n")


def load_classifier(path: str | Path) -> ShapesClassifier:
    """The classifier saved at ``path`` (``config.json`` + ``model.safetensors``), in eval mode."""
    path = Path(path)
    if not (path / WEIGHTS).is_file() or not (path / CONFIG).is_file():
        raise UserError("classifier path", str(path), f"a directory with {CONFIG} and {WEIGHTS} "
                        "(train one with `python run.py pipeline=train_world`)")
    model = ShapesClassifier(tuple(json.loads((path / CONFIG).read_text())["channels"]))
    model.load_state_dict(load_file(path / WEIGHTS))
    return model.eval().requires_grad_(False)


class ClassifierFeatures(nn.Module):
    """The frozen classifier's conv features [B, D, 16, 16] of RGB images in [0, 1]."""

    def __init__(self, classifier: ShapesClassifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier.features(x)


def classifier_features(path: str | Path) -> ClassifierFeatures:
    """SIFID feature network from the classifier at ``path``."""
    return ClassifierFeatures(load_classifier(path))
