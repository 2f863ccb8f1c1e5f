"""The job every ``python run.py ...`` runs: validate the config, build the configured parts, predict, write outputs."""

from __future__ import annotations

import importlib.metadata
import logging
import os
import time
import warnings
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from diffexplain.validation import validate

log = logging.getLogger("diffexplain")
PACKAGES = ("diffexplain", "torch", "diffusers", "transformers", "lightning", "hydra-core", "captum", "torchmetrics",
            "wandb", "numpy", "pandas")


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def choices() -> dict[str, str]:
    """The config-group choices of this job (``{"explainer": "rise", "schedule": "exp_late", ...}``)."""
    try:
        return {k: v for k, v in HydraConfig.get().runtime.choices.items() if not k.startswith("hydra")}
    except ValueError:
        return {}


def sweep_dir() -> Path | None:
    """The multirun's root directory, or None for a single run."""
    try:
        hc = HydraConfig.get()
    except ValueError:
        return None
    return Path(hc.sweep.dir) if hc.mode == RunMode.MULTIRUN else None


def is_child_rank() -> bool:
    """True in the processes Lightning's DDP launcher starts for ranks > 0 (they re-run this job's script)."""
    return any(os.environ.get(k, "0") not in ("", "0") for k in ("LOCAL_RANK", "NODE_RANK", "RANK"))


def _build_logger(cfg: DictConfig, out_dir: Path, pipeline_name: str, config: dict, described: dict | None = None):
    """The configured Lightning logger. W&B: one run per job (rank 0 starts it) with the sweep as its group, the
    job's choices as its name and as top-level config keys with what the job resolved (``described``: the model's
    architecture) and the resolved config under ``cfg``, the pipeline as job type; silent, its path is printed once
    at the end."""
    if cfg.get("logger") is None:
        return False
    if not cfg.logger._target_.endswith("WandbLogger"):
        return instantiate(cfg.logger)
    from lightning.pytorch.loggers import WandbLogger

    from diffexplain.runner.wandb_run import job_name, start_run, sweep_group

    lc = cfg.logger
    if is_child_rank():  # Lightning gives ranks > 0 a dummy experiment; only rank 0 logs
        return WandbLogger(project=lc.project, save_dir=str(out_dir), offline=lc.offline)
    sweep = sweep_dir()
    run = start_run(OmegaConf.to_container(lc, resolve=True), out_dir, group=sweep_group(sweep) if sweep else None,
                    name=job_name(), job_type=pipeline_name, config={**choices(), **(described or {}), "cfg": config})
    return WandbLogger(experiment=run, save_dir=str(out_dir), log_model=lc.log_model)


def quiet_libraries() -> None:
    """Keep the terminal to what a user can act on: Lightning's INFO lines (devices found, tips) and one deprecation
    warning Lightning triggers inside torch are dropped (Lightning sets its loggers' levels when imported)."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def run(cfg: DictConfig) -> Path:
    """Run one job; returns its output directory."""
    validate(cfg)
    from diffexplain.pipelines.base import Pipeline
    from diffexplain.runner.module import ExplainModule
    from diffexplain.runner.writer import OutputOptions, OutputWriter

    quiet_libraries()
    out_dir = Path(cfg.paths.output_dir)
    if not issubclass(get_class(cfg.pipeline._target_), Pipeline):  # a standalone job, e.g. train_world
        instantiate(cfg.pipeline).run(out_dir)
        return out_dir
    config = OmegaConf.to_container(cfg, resolve=True)
    options = OutputOptions(**cfg.output)
    schedule = instantiate(cfg.schedule) if cfg.get("schedule") is not None else None
    pipeline = instantiate(cfg.pipeline, schedule=schedule, x0_steps=options.x0_steps)
    data = instantiate(cfg.data)
    run_info = {"pipeline": pipeline.name, "choices": choices(), "versions": versions(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    writer = OutputWriter(out_dir, pipeline, data.items, run_info, config, options)
    done = writer.prepare(cfg.resume, destructive=not is_child_rank())
    if done is None:
        log.info("nothing to do: %s already holds this job's results", out_dir)
        return out_dir
    sweep = sweep_dir()
    twin = writer.twin(sweep) if sweep is not None else None
    if twin is not None:  # a finished job of this sweep has this job's results: take them, compute nothing
        name = twin[0].relative_to(sweep).as_posix()
        if not is_child_rank():
            writer.reuse(*twin, name=name)
        job = out_dir.resolve().relative_to(sweep.resolve()).as_posix()
        log.info("job %s: same results as job %s (%s); reused", job, name, writer.why_same(twin[1]))
        return out_dir
    if sweep is not None and hasattr(pipeline, "use_cache"):
        pipeline.use_cache(sweep / ".cache", config)
    model = instantiate(cfg[pipeline.model_key])
    pipeline.setup(model)
    run_info.update(pipeline.describe())
    data.skip(done)
    described = {k: run_info[k] for k in ("architecture",) if k in run_info}  # W&B names the model family too
    logger = _build_logger(cfg, out_dir, pipeline.name, config, described)
    trainer = instantiate(cfg.runner, logger=logger, inference_mode=False,
                          callbacks=[writer, *map(instantiate, cfg.runner.get("callbacks") or [])],
                          use_distributed_sampler=False, enable_checkpointing=False, enable_model_summary=False,
                          default_root_dir=str(out_dir))
    try:
        if data.todo:
            trainer.predict(ExplainModule(model, pipeline), datamodule=data, return_predictions=False)
        elif trainer.is_global_zero:
            writer.finalize(trainer)
    finally:
        if logger and cfg.logger._target_.endswith("WandbLogger"):
            import wandb

            wandb.finish()
    if trainer.is_global_zero:
        log.info("results: %s", out_dir)
        for run in sorted((out_dir / "wandb").glob("offline-run-*")):
            log.info("W&B (offline): %s  (upload: wandb sync %s)", run, run)
    return out_dir
