"""``python -m diffexplain.launcher [overrides]`` (``make slurm-example``): the SLURM launcher's settings for a sweep,
resolved as submitit will receive them — partition, GPUs, CPUs, memory, time limit, array parallelism and the setup
lines — without submitting anything."""

from __future__ import annotations

import sys

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from diffexplain.cli import CONF_DIR


def resolved_launcher(overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["hydra/launcher=slurm", *overrides], return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=True)


def main(argv: list[str] | None = None) -> None:
    overrides = sys.argv[1:] if argv is None else argv
    print("# hydra.launcher for: python run.py -m hydra/launcher=slurm " + " ".join(overrides))
    print(OmegaConf.to_yaml(resolved_launcher(overrides)), end="")


if __name__ == "__main__":
    main()
