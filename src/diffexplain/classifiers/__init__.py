"""Image classifiers for ``pipeline=noised_classifier`` (config group ``classifier``): the Shapes world's CNN and any
transformers image classifier, behind one interface (:class:`ImageClassifier`).

The classes are imported on first use, so :mod:`diffexplain.classifiers.labels` stays light for config validation."""

import importlib

_MODULES = {"ImageClassifier": "base", "HFImageClassifier": "hf", "ShapesImageClassifier": "shapes"}


def __getattr__(name: str):
    if name in _MODULES:
        return getattr(importlib.import_module(f"diffexplain.classifiers.{_MODULES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_MODULES)
