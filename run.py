"""diffexplain's command line: ``python run.py [group=choice ...] [key=value ...]`` (``-m`` for sweeps)."""

import hydra
from omegaconf import DictConfig

from diffexplain.cli import entry, run_job  # importing diffexplain registers the resolvers conf/ uses


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_job(cfg)


if __name__ == "__main__":
    entry(main)
