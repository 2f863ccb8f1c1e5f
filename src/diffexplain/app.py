"""The job every ``python run.py ...`` runs: build the configured parts, validate, predict, write outputs."""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

import diffexplain.config  # noqa: F401  (registers resolvers)
from diffexplain.errors import UserError

PACKAGES = ("diffexplain", "torch", "diffusers", "transformers", "lightning", "hydra-core", "captum", "torchmetrics",
            "wandb", "numpy", "pandas")
HYDRA_ONLY = {".hydra", "run.log", "main.log"}


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def user_error(exc: BaseException) -> UserError | None:
    """The UserError behind ``exc`` (Hydra wraps errors raised while instantiating)."""
    while exc is not None:
        if isinstance(exc, UserError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _choices() -> dict[str, str]:
    """The config-group choices of this job (``{"explainer": "rise", "schedule": "exp_late", ...}``)."""
    try:
        return {k: v for k, v in HydraConfig.get().runtime.choices.items() if not k.startswith("hydra")}
    except ValueError:
        return {}


def _sweep_name() -> str | None:
    try:
        hc = HydraConfig.get()
    except ValueError:
        return None
    return Path(hc.sweep.dir).name if hc.mode == RunMode.MULTIRUN else None


def _build_logger(cfg: DictConfig, out_dir: Path):
    if cfg.get("logger") is None:
        return False
    kwargs = {}
    if cfg.logger._target_.endswith("WandbLogger"):
        kwargs = {"save_dir": str(out_dir), "group": cfg.logger.get("group") or _sweep_name()}
    return instantiate(cfg.logger, **kwargs)


def run(cfg: DictConfig) -> Path:
    """Run one job; returns its output directory."""
    from diffexplain.runner.data import PromptItem  # noqa: F401  (heavy imports after config errors)
    from diffexplain.runner.module import ExplainModule
    from diffexplain.runner.writer import OutputWriter

    from diffexplain.pipelines.base import Pipeline

    out_dir = Path(cfg.paths.output_dir)
    if not issubclass(get_class(cfg.pipeline._target_), Pipeline):  # a standalone job, e.g. train_world
        instantiate(cfg.pipeline).run(out_dir)
        return out_dir
    schedule = instantiate(cfg.schedule)
    model = instantiate(cfg.model)
    pipeline = instantiate(cfg.pipeline, schedule=schedule)
    data = instantiate(cfg.data)
    pipeline.validate(model)

    run_info = {"pipeline": pipeline.name, "choices": _choices(), "config": OmegaConf.to_container(cfg, resolve=True),
                "versions": versions(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    writer = OutputWriter(out_dir, pipeline, data.items, run_info)
    data.skip(writer.done_ids())
    logger = _build_logger(cfg, out_dir)
    trainer = instantiate(cfg.runner, logger=logger, callbacks=[writer], inference_mode=False,
                          enable_checkpointing=False, enable_model_summary=False, default_root_dir=str(out_dir))
    try:
        if data.todo:
            trainer.predict(ExplainModule(model, pipeline), datamodule=data, return_predictions=False)
        elif trainer.is_global_zero:
            writer.finalize(trainer)
    finally:
        if logger and cfg.logger._target_.endswith("WandbLogger"):
            import wandb

            wandb.finish()
    return out_dir


def _remove_if_only_hydra(out_dir: Path) -> None:
    """A job that failed on bad input leaves no outputs: drop its directory if only Hydra's files are in it."""
    if out_dir.is_dir() and all(p.name in HYDRA_ONLY for p in out_dir.iterdir()):
        shutil.rmtree(out_dir, ignore_errors=True)


def main(cfg: DictConfig) -> None:
    """Entry point for ``run.py``: a user error prints one line and exits 2."""
    try:
        run(cfg)
    except Exception as exc:  # noqa: BLE001
        err = user_error(exc)
        if err is None:
            raise
        _remove_if_only_hydra(Path(cfg.paths.output_dir))
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
