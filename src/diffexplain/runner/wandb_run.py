"""W&B runs: their names and groups, and the one place a W&B run is started (``wandb.init``).

A job's run: ``group`` = its sweep (``2026-11-23/13-52-10-123456``), ``name`` = its own overrides, ``job_type`` = its
pipeline. A sweep's report is a run of its own in the same group. Runs are silent and offline unless the logger says
``offline: false``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hydra.core.hydra_config import HydraConfig


def sweep_group(sweep: Path) -> str:
    """A W&B group for a sweep, unique and readable: ``2026-11-23/13-52-10-123456`` for the default sweep directories
    (date/time), else the directory's name and a short hash of its absolute path."""
    sweep = Path(sweep).resolve()
    if sweep.parent.name[:2].isdigit():
        return f"{sweep.parent.name}/{sweep.name}"
    return f"{sweep.name}-{hashlib.sha1(str(sweep).encode()).hexdigest()[:6]}"


def job_name() -> str:
    """A W&B run name: the job's own overrides (a sweep's choices), else ``default``."""
    try:
        overrides = list(HydraConfig.get().overrides.task)
    except ValueError:
        overrides = []
    keep = [o for o in overrides if not o.startswith(("hydra.", "paths.", "logger."))]
    return ",".join(keep)[:128] or "default"


def start_run(logger: dict, directory: Path, *, group: str | None, name: str, job_type: str,
              config: dict | None = None):
    """``wandb.init`` for the configured W&B logger (``conf/logger/wandb.yaml``): the logger's own ``group``/``name``
    win over the ones given here."""
    import wandb

    return wandb.init(project=logger.get("project", "diffexplain"), entity=logger.get("entity"), dir=str(directory),
                      mode="offline" if logger.get("offline", True) else "online",
                      group=logger.get("group") or group, name=logger.get("name") or name, job_type=job_type,
                      tags=logger.get("tags"), config=config, settings=wandb.Settings(silent=True))
