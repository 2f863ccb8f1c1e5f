"""OmegaConf resolvers used by ``conf/`` (registered before Hydra composes the config)."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import OmegaConf


def project_root() -> str:
    """``$DIFFEXPLAIN_ROOT``, else the checkout this package lives in (it holds ``conf/`` and ``models/``), else cwd."""
    if os.environ.get("DIFFEXPLAIN_ROOT"):
        return os.environ["DIFFEXPLAIN_ROOT"]
    checkout = Path(__file__).resolve().parents[3]
    return str(checkout if (checkout / "conf").is_dir() else Path.cwd())


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", project_root)


register_resolvers()
