"""What a job logs (runner/ is the only layer that logs): mean metrics to every logger; to W&B also the figures,
the job's tables, the games' mean curves as line plots and previews of the first items' heatmaps with captions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

MAX_TABLE_ROWS = 10_000


def table_frame(df: pd.DataFrame) -> pd.DataFrame:
    return df.astype(object).where(df.notna(), None)


def log_job(loggers, results: pd.DataFrame, tables: dict[str, pd.DataFrame], figures: list[Path],
            previews: list[tuple[np.ndarray, str]]) -> None:
    from lightning.pytorch.loggers import WandbLogger

    means = results.groupby(["metric"], dropna=False)["value"].mean()
    summary = {f"mean/{metric}": float(v) for metric, v in means.items()}
    for logger in loggers:
        if summary:
            logger.log_metrics(summary)
        if isinstance(logger, WandbLogger):
            log_wandb(logger.experiment, results, tables, figures, previews)
        logger.finalize("success")


def log_wandb(run, results: pd.DataFrame, tables: dict[str, pd.DataFrame], figures: list[Path],
              previews: list[tuple[np.ndarray, str]]) -> None:
    import wandb

    payload = {f"figures/{path.stem}": wandb.Image(str(path), caption=path.stem) for path in figures}
    payload.update({f"tables/{name}": wandb.Table(dataframe=table_frame(t)) for name, t in tables.items()})
    payload["tables/results"] = wandb.Table(dataframe=table_frame(results.head(MAX_TABLE_ROWS)))
    for game in ("deletion", "insertion"):
        curves = results[results.metric == f"{game}_curve"]
        if curves.empty:
            continue
        mean = curves.groupby(["explainer", "x"], dropna=False)["value"].mean().reset_index()
        names = sorted(mean.explainer.astype(str).unique())
        xs = [mean[mean.explainer.astype(str) == n].x.astype(float).tolist() for n in names]
        ys = [mean[mean.explainer.astype(str) == n].value.astype(float).tolist() for n in names]
        payload[f"curves/{game}"] = wandb.plot.line_series(xs=xs, ys=ys, keys=names, title=f"mean {game} curve",
                                                           xname="share of latent pixels")
    if previews:
        payload["heatmaps"] = [wandb.Image(image, caption=caption) for image, caption in previews]
    run.log(payload)
