"""Which of a classifier's labels is an image's true class: its class name (a folder name, a Shapes class) matched to
the classifier's label names, through an optional ``classifier.label_map``. No heavy imports: config validation uses
it before any model loads."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from diffexplain.errors import UserError, check, shorten


def _norm(text: str) -> str:
    return " ".join(str(text).lower().replace("_", " ").split())


def read_label_map(label_map) -> dict | None:
    """``classifier.label_map``: a mapping {class name: label name or id}, a JSON file holding one, or None."""
    if label_map is None:
        return None
    if isinstance(label_map, (str, Path)):
        path = Path(label_map)
        check(path.is_file(), "classifier.label_map", str(label_map),
              "a mapping {class name: label} or an existing JSON file holding one")
        try:
            label_map = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError("classifier.label_map", str(path), f"a readable JSON object ({type(e).__name__})") from e
    check(isinstance(label_map, Mapping) and all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                                 for v in label_map.values()),
          "classifier.label_map", label_map, "a mapping {class name: label name or label id}")
    return {str(k): v for k, v in label_map.items()}


def resolve_label(name: str, labels: Sequence[str], label_map: Mapping | None = None) -> int:
    """The index of class ``name`` among ``labels``: through ``label_map`` (to a label name or id) if it maps
    ``name``, then an exact match, then a unique match ignoring case and ``_`` against a label or one of its
    comma-separated synonyms (``"tiger"`` finds ``"tiger, Panthera tigris"``). Otherwise a one-line
    :class:`UserError`."""
    target = label_map.get(name, name) if label_map else name
    if isinstance(target, int):
        check(0 <= target < len(labels), "classifier.label_map", {name: target},
              f"label ids in [0, {len(labels) - 1}] (the classifier has {len(labels)} labels)")
        return target
    if target in labels:
        return list(labels).index(target)
    hits = [i for i, label in enumerate(labels)
            if _norm(target) == _norm(label) or _norm(target) in [_norm(s) for s in str(label).split(",")]]
    if len(hits) == 1:
        return hits[0]
    examples = ", ".join(repr(x) for x in list(labels)[:3]) + (", ..." if len(labels) > 3 else "")
    if hits:
        raise UserError("classifier.label_map", name, shorten(
            f"one label for class {name!r}; it matches {len(hits)}: {[labels[i] for i in hits[:4]]}; pick one with "
            f"classifier.label_map='{{{name}: <label>}}'", 300))
    raise UserError("classifier.label_map", name, shorten(
        f"a class the classifier knows: {target!r} is none of its {len(labels)} labels ({examples}); map it with "
        f"classifier.label_map='{{{name}: <label name or id>}}'", 300))
