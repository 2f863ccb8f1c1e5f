import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"

import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny():
    from diffexplain.models import tiny_model

    return tiny_model(seed=0)


def run_cli(*overrides: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """``python run.py overrides...`` as a user runs it."""
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *overrides], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ}, timeout=600)
