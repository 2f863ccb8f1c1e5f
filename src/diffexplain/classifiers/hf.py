"""``classifier=hf``: any transformers image classifier (AutoModelForImageClassification + AutoImageProcessor)."""

from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor

from diffexplain.classifiers.base import ImageClassifier
from diffexplain.errors import UserError, shorten


class HFImageClassifier(ImageClassifier):
    """A transformers image classifier with its own image processor: ``preprocess`` is the processor without
    normalisation (resize, crop, rescale to [0, 1]); ``forward`` normalises with the processor's mean and std."""

    def __init__(self, model, processor, label_map=None, source: str = ""):
        config = model.config
        super().__init__([str(config.id2label[i]) for i in range(config.num_labels)], label_map, source)
        self.model = model.eval().requires_grad_(False)
        self.processor = processor
        normalise = getattr(processor, "do_normalize", False)
        mean = processor.image_mean if normalise else [0.0, 0.0, 0.0]
        std = processor.image_std if normalise else [1.0, 1.0, 1.0]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @classmethod
    def from_pretrained(cls, path: str, label_map=None) -> HFImageClassifier:
        """Model and processor from a local directory or a hub id (``HF_HUB_OFFLINE=1``: local or cached only)."""
        import transformers
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        transformers.utils.logging.disable_progress_bar()  # a loading bar per model is noise
        quiet = logging.getLogger("transformers.models.auto.image_processing_auto")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # "falling back to the PIL backend" when torchvision is absent
        try:
            processor = AutoImageProcessor.from_pretrained(path)
            model = AutoModelForImageClassification.from_pretrained(path)
        except (OSError, ValueError, KeyError) as e:
            raise UserError("classifier.path", path, shorten(
                "a directory or hub id holding an image-classification model and its image processor "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})", 300)) from e
        finally:
            quiet.setLevel(level)
        return cls(model, processor, label_map, str(path))

    def preprocess(self, images: list[np.ndarray]) -> Tensor:
        return self.processor(images=list(images), do_normalize=False, return_tensors="pt")["pixel_values"].float()

    def forward(self, x: Tensor) -> Tensor:
        return self.model(pixel_values=(x - self.mean) / self.std).logits
