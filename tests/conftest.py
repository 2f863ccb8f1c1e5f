import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"

import contextlib
import copy
import subprocess
import sys
from pathlib import Path

import pytest

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


# One OpenMP thread unless the caller set OMP_NUM_THREADS: on a shared 2-core CPU, two spinning threads make the tiny
# model's jobs 10-20x slower. The thread count changes floats in their last bits (reductions split differently), so
# every process whose results are compared bit for bit must be started with this environment.
CLI_ENV = {"OMP_NUM_THREADS": "1", **os.environ}


def run_cli(*overrides: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """``python run.py overrides...`` as a user runs it, in :data:`CLI_ENV`."""
    return subprocess.run([sys.executable, str(ROOT / "run.py"), *overrides], cwd=cwd, capture_output=True,
                          text=True, env=CLI_ENV, timeout=600)


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


# -- in-process jobs: what `python run.py overrides...` does, without a new interpreter -------------------------------

CONF = ROOT / "conf"


@contextlib.contextmanager
def hydra_job(*overrides: str, out_dir: Path | str | None = None):
    """The config a job of ``python run.py overrides...`` receives, composed in-process as Hydra's ``run_job`` does
    (lightning-hydra-template's way): ``return_hydra_config=True``, the Hydra node installed as
    ``HydraConfig`` (choices, mode RUN), ``hydra.runtime.output_dir`` the run directory (``out_dir`` when given, else
    ``hydra.run.dir``), and the task config without the ``hydra`` node. ``HydraConfig`` is cleared on exit."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict, read_write

    extra = [f"hydra.run.dir={out_dir}"] if out_dir is not None else []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, *extra], return_hydra_config=True)
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.mode = RunMode.RUN
        cfg.hydra.runtime.output_dir = os.path.abspath(str(cfg.hydra.run.dir))
    HydraConfig.instance().set_config(cfg)
    try:
        task = copy.deepcopy(cfg)
        with read_write(task), open_dict(task):
            del task["hydra"]
        yield task
    finally:
        HydraConfig.instance().cfg = None


def run_job(*overrides: str, out_dir: Path) -> Path:
    """``python run.py overrides... hydra.run.dir=out_dir`` in this process (``diffexplain.app.run``); returns the
    run directory, created first as Hydra does. Errors propagate as raised (a user error is a ``UserError``)."""
    import torch

    from diffexplain.app import run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as run_cli: the tiny models' jobs run 10-20x faster on a shared CPU with one thread
    try:
        with hydra_job(*overrides, out_dir=out_dir) as cfg:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            return run(cfg)
    finally:
        torch.set_num_threads(threads)


def cli_refusal(*overrides: str, out_dir: Path, capsys) -> str:
    """The CLI's answer to ``python run.py overrides...`` computed in-process through the CLI's own error contract
    (``cli.entry`` around composition + Hydra's directory creation + ``cli.run_job``): asserts exit status 2, exactly
    one ``error: ...`` line on stderr and no run directory left behind; returns the line."""
    from diffexplain.cli import entry
    from diffexplain.cli import run_job as cli_run_job

    def main():
        with hydra_job(*overrides, out_dir=out_dir) as cfg:
            from hydra.core.hydra_config import HydraConfig

            run_dir = Path(HydraConfig.get().runtime.output_dir)
            run_dir.mkdir(parents=True, exist_ok=True)  # as Hydra's run_job does before the task function
            (run_dir / ".hydra").mkdir(exist_ok=True)
            cli_run_job(cfg)

    existed = Path(out_dir).exists()  # e.g. a file where the run directory should go
    capsys.readouterr()
    full_error = os.environ.get("HYDRA_FULL_ERROR")
    try:
        with pytest.raises(SystemExit) as exit_info:
            entry(main)
    finally:
        if full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = full_error
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert exit_info.value.code == 2, (exit_info.value.code, err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert existed or not Path(out_dir).exists(), "a refused run left its directory behind"
    return lines[0]


# -- shared models and runs (loaded once per session) ----------------------------------------------------------------

SHAPES_SD, SHAPES_GROUNDED = ROOT / "models" / "shapes-sd", ROOT / "models" / "shapes-sd-grounded"


@pytest.fixture(scope="session")
def shapes():
    """The embedded Shapes model as ``model=shapes`` ships it (dpm_solver, guidance 5). Shared: do not mutate."""
    from diffexplain.models import DiffusionModel

    return DiffusionModel.from_pretrained(str(SHAPES_SD), scheduler="dpm_solver", guidance_scale=5.0)


GROUNDED_PROMPTS = ["a red circle and a blue triangle", "a yellow square and a green circle",
                    "a blue triangle and a red square"]


@pytest.fixture(scope="session")
def grounded():
    """The grounded Shapes model (dpm_solver, guidance 5) and its 20-step trajectories of ``GROUNDED_PROMPTS``
    (seed = index): ``(model, [trajectory, ...])``. Shared: do not mutate."""
    from diffexplain.models import DiffusionModel
    from diffexplain.schedules import Uniform

    model = DiffusionModel.from_pretrained(str(SHAPES_GROUNDED), scheduler="dpm_solver", guidance_scale=5.0)
    return model, [model.generate(prompt, seed, Uniform(20)) for seed, prompt in enumerate(GROUNDED_PROMPTS)]


SWEEP_EXPLAINERS = ("random", "cam")


@pytest.fixture(scope="session")
def finished_sweep(tmp_path_factory) -> tuple[Path, tuple[str, ...]]:
    """One small finished sweep, as a user runs it: ``python run.py -m hydra/launcher=local`` (submitit's local
    launcher) over ``explainer=random,cam`` on the tiny model with the default logger (W&B offline); the sweep ends
    with its report. ``(sweep dir, explainer of job 0, 1)``. Shared by the W&B, launcher and report tests: read only."""
    sweep = tmp_path_factory.mktemp("finished-sweep") / "sweep"
    res = run_cli("-m", "hydra/launcher=local", "model=tiny", "schedule.num_steps=3", "explainer.steps=[2]",
                  "data.prompts=[a red circle]", f"explainer={','.join(SWEEP_EXPLAINERS)}", f"hydra.sweep.dir={sweep}")
    assert res.returncode == 0, res.stderr[-3000:]
    return sweep, SWEEP_EXPLAINERS
