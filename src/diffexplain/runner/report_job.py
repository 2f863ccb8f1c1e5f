"""``pipeline=report sweep_dir=<dir>``: the report of a sweep or a run, in files and (its own run of the sweep's
group) in W&B. Every multirun also ends with it (``diffexplain.cli.SweepCallback``)."""

from __future__ import annotations

import logging
from pathlib import Path

from diffexplain.errors import check
from diffexplain.reporting.report import Report, build

log = logging.getLogger("diffexplain")


class ReportJob:
    def __init__(self, sweep_dir: str, bootstrap: int = 10_000, logger: dict | None = None):
        path = Path(str(sweep_dir))
        check(path.is_dir(), "sweep_dir", sweep_dir,
              "a multirun directory (outputs/multirun/<date>/<time>) or a run dir")
        check(isinstance(bootstrap, int) and bootstrap >= 100, "pipeline.bootstrap", bootstrap, "an integer >= 100")
        self.sweep_dir, self.bootstrap, self.logger = path, bootstrap, logger

    def run(self, out_dir: Path | None = None) -> Report:
        report = build(self.sweep_dir, self.bootstrap)
        if self.logger and str(self.logger.get("_target_", "")).endswith("WandbLogger"):
            self.log_wandb(report)
        log.info("report: %s", report.path)
        return report

    def log_wandb(self, report: Report) -> None:
        """The report as its own W&B run in the sweep's group (job type ``report``)."""
        import wandb

        from diffexplain.runner.wandb_log import table_frame
        from diffexplain.runner.wandb_run import start_run, sweep_group

        run = start_run(self.logger, self.sweep_dir, group=sweep_group(self.sweep_dir), name="report",
                        job_type="report")
        try:
            payload = {f"report/{name}": wandb.Table(dataframe=table_frame(t)) for name, t in report.tables.items()}
            payload.update({f"report/{p.stem}": wandb.Image(str(p), caption=p.stem) for p in report.figures})
            run.log(payload)
        finally:
            run.finish()
