"""``classifier=shapes``: the Shapes world's CNN (models/shapes-classifier), 12 labels "red circle" ... "yellow
triangle", 32x32 input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from diffexplain.classifiers.base import ImageClassifier
from diffexplain.errors import check
from diffexplain.world.classifier import CLASSES, ShapesClassifier, load_classifier

SIZE = 32


class ShapesImageClassifier(ImageClassifier):
    """The world's :class:`~diffexplain.world.classifier.ShapesClassifier`; images of another size are resized to
    32x32 (bilinear)."""

    def __init__(self, net: ShapesClassifier, label_map=None, source: str = ""):
        super().__init__([f"{c} {s}" for c, s in CLASSES], label_map, source)
        self.net = net.eval().requires_grad_(False)

    @classmethod
    def from_pretrained(cls, path: str, label_map=None) -> ShapesImageClassifier:
        check(Path(path).is_dir(), "classifier.path", path, "a directory holding a Shapes classifier "
              "(config.json + model.safetensors; `python run.py pipeline=train_world` trains one)")
        return cls(load_classifier(path), label_map, str(path))

    def preprocess(self, images: list[np.ndarray]) -> Tensor:
        out = []
        for img in images:
            if img.shape[:2] != (SIZE, SIZE):
                img = np.asarray(Image.fromarray(img).resize((SIZE, SIZE), Image.BILINEAR))
            out.append(torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float() / 255)
        return torch.stack(out)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
