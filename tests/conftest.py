import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_thread():
    """The tiny model gains nothing from threads; on a shared CPU, OpenMP's spinning threads slow it 10×."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny():
    from diffexplain.models import tiny_model

    return tiny_model(seed=0)


def run_cli(*overrides: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """``python run.py overrides...`` as a user runs it."""
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *overrides], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ}, timeout=600)


@pytest.fixture(scope="session")
def tiny_pipeline_dirs(tmp_path_factory) -> dict[str, Path]:
    """Tiny SDXL and SD 2 (v-prediction) pipelines saved with ``save_pretrained``: ``{"sdxl": dir, "sd2": dir}``.

    Load them as users load hub models: ``DiffusionModel.from_pretrained(str(dirs["sdxl"]))``.
    """
    from diffexplain.models.tiny import build_tiny_pipeline

    root = tmp_path_factory.mktemp("tiny-pipelines")
    dirs = {}
    for variant in ("sdxl", "sd2"):
        build_tiny_pipeline(seed=0, variant=variant).save_pretrained(root / variant)
        dirs[variant] = root / variant
    return dirs
