"""The command line's error contract: every error a user can cause is one line on stderr and exit status 2.

``run.py`` calls :func:`entry` around Hydra's main and :func:`run_job` as the task function. Hydra's own errors
(unknown group choices, unknown keys, override syntax) are rewritten to one line; a single run that fails on bad
input leaves no directory behind; inside a multirun a failed job prints its line, leaves ``failed.json`` in its
directory and returns (so no launcher stops the sweep), and the sweep ends with one line naming the failed jobs.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import shutil
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from diffexplain.errors import ResultError, UserError, shorten

log = logging.getLogger("diffexplain")
HYDRA_FILES = {".hydra", "run.log", "main.log", ".partial"}
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
FAILED = "failed.json"


class _Sweep:
    """The multirun this process launches, if any (for the final summary), and the first of its directories that did
    not exist before it (removed again when the sweep is refused before any job starts)."""

    dir: Path | None = None
    created: Path | None = None


class SweepCallback(Callback):
    """Hydra callback (conf/hydra/default.yaml): remembers the sweep directory in the launching process, whatever
    the launcher (jobs of submitit launchers run in other processes)."""

    def on_multirun_start(self, config, **kwargs) -> None:
        _Sweep.dir = Path(config.hydra.sweep.dir)
        missing = [p for p in (_Sweep.dir, *_Sweep.dir.parents) if not p.exists()]
        _Sweep.created = missing[-1] if missing else None

    def on_multirun_end(self, config, **kwargs) -> None:
        """Every sweep ends with its report (when a job finished and the sweep's jobs are explained runs)."""
        from omegaconf import OmegaConf

        from diffexplain.reporting.report import find_jobs

        sweep = Path(config.hydra.sweep.dir)
        if not sweep.is_dir() or not find_jobs(sweep)[0] or config.get("sweep_dir") is not None:
            return
        from diffexplain.runner.report_job import ReportJob

        logger = OmegaConf.to_container(config.logger, resolve=True) if config.get("logger") is not None else None
        try:
            ReportJob(str(sweep), logger=logger).run()
        except Exception as exc:
            log.exception("the sweep's report failed (%s); rerun: python run.py pipeline=report sweep_dir=%s",
                          type(exc).__name__, sweep)


def user_error(exc: BaseException | None) -> Exception | None:
    """The UserError/ResultError behind ``exc`` (Hydra and Lightning wrap errors raised inside them)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (UserError, ResultError)):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _only_hydra_files(out_dir: Path) -> bool:
    """True if a run directory holds nothing a user computed (Hydra's files, at most an empty resume folder)."""
    if not out_dir.is_dir():
        return False
    partial = out_dir / ".partial"
    shards = [p for p in partial.iterdir() if p.name != "config.json"] if partial.is_dir() else []
    return not shards and all(p.name in HYDRA_FILES for p in out_dir.iterdir())


def run_job(cfg) -> None:
    """Hydra's task function: run the job, turning user errors into one line (single run: exit 2)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from diffexplain.app import run

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    out_dir = Path(hc.runtime.output_dir)
    if multirun:
        (out_dir / FAILED).unlink(missing_ok=True)
    try:
        run(cfg)
    except Exception as exc:
        err = user_error(exc)
        message = str(err) if err is not None else f"{type(exc).__name__}: {shorten(str(exc), 300)}"
        if not multirun:
            if err is None:
                raise
            if _only_hydra_files(out_dir):
                shutil.rmtree(out_dir, ignore_errors=True)
            print(f"error: {message}", file=sys.stderr)
            sys.exit(2)
        job = f"job {hc.job.num}"
        if err is None:
            log.exception("%s failed", job)
        print(f"error: {job}: {message}", file=sys.stderr)
        (out_dir / FAILED).write_text(json.dumps({"job": hc.job.num, "overrides": list(hc.overrides.task),
                                                  "error": message}, indent=2))


def entry(hydra_main) -> None:
    """Run Hydra's main; report Hydra's errors in one line (exit 2), and end a multirun whose jobs failed with one
    line naming them (exit 2) — the failed jobs did not stop the others."""
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing; this function reports
    try:
        hydra_main()
    except SystemExit:
        raise
    except Exception as exc:
        message = hydra_message(exc)
        if message is None:
            raise
        remove_refused_sweep()
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    if _Sweep.dir is not None:
        failed = failed_jobs(_Sweep.dir)
        if failed:
            total = sum(1 for p in _Sweep.dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir())
            print(f"error: {len(failed)} of {total} jobs failed: {'; '.join(failed)} (see {_Sweep.dir})",
                  file=sys.stderr)
            sys.exit(2)


def remove_refused_sweep() -> None:
    """A sweep refused before its first job (e.g. an unknown choice in ``explainer=rise,nope``) leaves nothing: Hydra
    has already written the sweep's ``multirun.yaml``; it goes, with the directories the sweep created."""
    sweep, created = _Sweep.dir, _Sweep.created
    if sweep is None or not sweep.is_dir() or any(p.name != "multirun.yaml" for p in sweep.iterdir()):
        return
    (sweep / "multirun.yaml").unlink(missing_ok=True)
    for path in (sweep, *sweep.parents):  # empty folders up to the first one the sweep created
        if created is None or not path.is_dir() or any(path.iterdir()):
            break
        path.rmdir()
        if path == created:
            break


def failed_jobs(sweep: Path) -> list[str]:
    """``#1 schedule.num_steps=0`` for every job of ``sweep`` that left ``failed.json``: its number and the overrides
    that set it apart from the other jobs."""
    overrides = {}
    for job_dir in sweep.iterdir():
        path = job_dir / ".hydra" / "overrides.yaml"
        if path.is_file():
            overrides[job_dir.name] = [line[2:].strip() for line in path.read_text().splitlines()
                                       if line.startswith("- ")]
    common = set.intersection(*map(set, overrides.values())) if overrides else set()
    failed = []
    for marker in sorted(sweep.glob(f"*/{FAILED}"), key=lambda p: (len(p.parent.name), p.parent.name)):
        info = json.loads(marker.read_text())
        own = [o for o in info.get("overrides", []) if o not in common]
        failed.append(f"#{info.get('job', marker.parent.name)} {shorten(' '.join(own), 80)}".strip())
    return failed


def hydra_message(exc: BaseException) -> str | None:
    """One line for an error Hydra raises while composing the config or creating directories, else None."""
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException

    err = user_error(exc)
    if err is not None:
        return str(err)
    text = str(exc)
    if isinstance(exc, MissingConfigException):
        found = re.search(r"Could not find '([^']+)/([^'/]+)'", text)
        options = re.findall(r"^\t(\S+)$", text, flags=re.M)
        if found and options:
            return f"{found.group(1)}={found.group(2)} is not a choice; one of [{', '.join(options)}]"
        return shorten(text.splitlines()[0], 300)
    if isinstance(exc, ConfigCompositionException):
        cause = exc.__cause__
        key = re.search(r"Could not override '([^']+)'", text) or re.search(r"full_key: (\S+)", text)
        if key and "not in struct" in f"{text} {cause}":
            return unknown_key(key.group(1))
        return shorten(f"{text.splitlines()[0]} {cause}" if cause else text.splitlines()[0], 300)
    if isinstance(exc, OverrideParseException):
        return shorten(f"cannot parse an override: {text.splitlines()[0]}", 300)
    if isinstance(exc, OSError) and exc.filename:
        return shorten(f"cannot create the output directory {exc.filename}: {exc.strerror}", 300)
    if isinstance(exc, ValueError) and text.startswith("Unable to configure handler"):
        # logging.config could not open the job's log file (run.log): an output directory this user cannot write
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, OSError) and cause.filename:
            return shorten(f"cannot write the job's log {cause.filename}: {cause.strerror} (the output directory "
                           "must be writable; choose another with hydra.run.dir=... or hydra.sweep.dir=...)", 300)
    return None


def unknown_key(key: str, known: list[str] | None = None) -> str:
    """``explainer.foo is not a config key; nearest: explainer.fool`` (nearest among the composed config's keys)."""
    known = known if known is not None else default_keys()
    if key in known:  # a key of the default choice, missing from the one this command (or one sweep job) picks
        group = key.split(".")[0]
        return (f"{key} is not a key of the {group} chosen here (a sweep over {group}=... must not set it for "
                f"choices without it)")
    nearest = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; nearest: {nearest[0]}" if nearest else ""
    return f"{key} is not a config key{hint} (python run.py --cfg job prints the config)"


def default_keys() -> list[str]:
    """Every dotted key of the default config, for suggestions (empty if it cannot be composed)."""
    try:
        from hydra import compose, initialize_config_dir
        from omegaconf import OmegaConf

        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose("config")
        container = OmegaConf.to_container(cfg, resolve=False)
    except Exception:
        return []
    return flatten_keys(container)


def flatten_keys(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        out += flatten_keys(v, key + ".") if isinstance(v, dict) and v else [key]
    return out
