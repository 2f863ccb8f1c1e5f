"""Files: atomic writes (a reader never sees a half-written output, a crash never leaves one), streamed npz archives,
image files, and :func:`load_run`, the one reader of a job's output directory.

Everything is a data format — parquet, npz of numeric arrays, JSON, WebP: reading an output never runs code.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

IMAGE_SUFFIX = ".webp"


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str))


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


class NpzWriter:
    """An npz archive written one array at a time (memory holds one array), renamed into place on success.

    ``with NpzWriter(path) as npz: npz.add(key, array)``; ``np.load(path)`` reads it like ``np.savez_compressed``'s.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __enter__(self) -> NpzWriter:
        self._atomic = atomic_path(self.path)
        tmp = self._atomic.__enter__()
        self._zip = zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True)
        return self

    def add(self, key: str, array: np.ndarray) -> None:
        array = np.asarray(array)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{key}: only numeric arrays are stored, not {array.dtype}")
        with self._zip.open(f"{key}.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, array)

    def __exit__(self, *exc) -> None:
        self._zip.close()
        self._atomic.__exit__(*exc)


def write_npz(path, arrays: Mapping[str, np.ndarray]) -> None:
    with NpzWriter(path) as npz:
        for key, value in arrays.items():
            npz.add(key, value)


def read_npz(path) -> dict[str, np.ndarray]:
    """Every array of an npz file (numpy refuses object arrays by default: nothing is deserialised as code)."""
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def write_image(path, image: np.ndarray, quality: int | None = None) -> None:
    """A uint8 HWC image as WebP: lossless for ``quality=None``, else lossy at ``quality`` (1–100)."""
    from PIL import Image

    kwargs = {"lossless": True, "quality": 50, "method": 2} if quality is None else {"quality": int(quality)}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(f, format="WEBP", **kwargs)


def read_image(path) -> np.ndarray:
    """A stored image as a uint8 HWC array."""
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


class ImageFiles(Mapping):
    """The images of a run, keyed as in the output contract (``"{item_id}/final"``, ``"{item_id}/x0/{step}"``),
    read from ``images/<key>.webp`` only when accessed."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._keys = sorted(str(p.relative_to(self.root).with_suffix("")) for p in self.root.rglob(f"*{IMAGE_SUFFIX}")
                            ) if self.root.is_dir() else []

    def __getitem__(self, key: str) -> np.ndarray:
        path = self.root / f"{key}{IMAGE_SUFFIX}"
        if not path.is_file():
            raise KeyError(key)
        return read_image(path)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


class Run:
    """A job's output directory, read lazily: ``results`` (DataFrame), ``info`` (run.json), ``heatmaps``
    (npz mapping: arrays are read when accessed) and ``images`` (:class:`ImageFiles`)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "results.parquet").is_file():
            raise FileNotFoundError(f"{self.path} holds no results.parquet (not a finished diffexplain run)")
        self._results = None
        self._heatmaps = None

    @property
    def results(self):
        if self._results is None:
            import pandas as pd

            self._results = pd.read_parquet(self.path / "results.parquet")
        return self._results

    @property
    def info(self) -> dict:
        path = self.path / "run.json"
        return read_json(path) if path.is_file() else {}

    @property
    def heatmaps(self) -> Mapping[str, np.ndarray]:
        if self._heatmaps is None:
            path = self.path / "heatmaps.npz"
            self._heatmaps = np.load(path) if path.is_file() else {}
        return self._heatmaps

    @property
    def images(self) -> ImageFiles:
        return ImageFiles(self.path / "images")


def load_run(path: str | Path) -> Run:
    """The one documented reader of a job's output directory (see :class:`Run`)."""
    return Run(path)
