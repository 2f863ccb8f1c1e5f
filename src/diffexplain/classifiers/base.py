"""The classifier interface of ``pipeline=noised_classifier``: un-normalised images in [0, 1] in, logits out."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from diffexplain.classifiers.labels import read_label_map, resolve_label


class ImageClassifier(nn.Module):
    """An image classifier seen through its input space before normalisation.

    ``preprocess`` turns images (uint8 HxWx3) into the classifier's input [B, 3, H, W] in [0, 1] (its own resize and
    crop, no normalisation); ``forward`` takes such a batch (noised values outside [0, 1] included), applies the
    classifier's own normalisation and returns logits [B, num_labels]. ``labels`` are the label names in id order.
    """

    def __init__(self, labels: list[str], label_map=None, source: str = ""):
        super().__init__()
        self.labels, self.source = list(labels), source
        self.label_map = read_label_map(label_map)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def preprocess(self, images: list[np.ndarray]) -> Tensor:
        raise NotImplementedError

    def preprocess_mask(self, mask: np.ndarray) -> np.ndarray:
        """A bool HxW mask of an image moved through the same resize and crop as the image (threshold 0.5)."""
        rgb = np.repeat(mask[..., None].astype(np.uint8) * 255, 3, axis=-1)
        return self.preprocess([rgb])[0, 0].numpy() > 0.5

    def class_index(self, name: str) -> int:
        """The label id of class ``name`` (see :func:`~diffexplain.classifiers.labels.resolve_label`)."""
        return resolve_label(name, self.labels, self.label_map)

    def describe(self) -> dict:
        return {"classifier": type(self).__name__, "source": self.source, "num_labels": len(self.labels),
                "label_map": self.label_map}
