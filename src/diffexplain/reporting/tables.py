"""The tidy results table of the output contract: one row per number."""

from __future__ import annotations

import pandas as pd

COLUMNS = {
    "prompt_id": "string", "prompt": "string", "seed": "int64", "step_index": "Int64", "timestep": "Float64",
    "explainer": "string", "similarity": "string", "metric": "string", "value": "float64", "token": "string",
    "x": "Float64", "other_step": "Int64", "stage": "string",
}
"""Columns of the diffusion pipelines' rows. ``token``: the word of per-token maps; ``x``: the abscissa of curve rows
(``deletion_curve``/``insertion_curve``); ``other_step``: the second step of step-pair rows (``step_spearman``);
``stage``: the cascade stage of ``sanity_rho`` rows. Columns a row does not use are null."""


def row(item, metric: str, value: float, step_index: int | None = None, timestep: float | None = None,
        explainer: str | None = None, similarity: str | None = None, token: str | None = None, **extra) -> dict:
    """One result row for a :class:`~diffexplain.items.PromptItem` (``extra``: ``x``, ``other_step``, ``stage``)."""
    return {"prompt_id": item.prompt_id, "prompt": item.prompt, "seed": item.seed, "step_index": step_index,
            "timestep": timestep, "explainer": explainer, "similarity": similarity, "metric": metric,
            "value": float(value), "token": token, **extra}


def to_frame(rows: list[dict] | pd.DataFrame, columns: dict[str, str] = COLUMNS) -> pd.DataFrame:
    """Rows → a DataFrame with exactly ``columns`` and their dtypes (nullable where a column may be empty)."""
    df = pd.DataFrame(rows, columns=list(columns))
    return df.astype(columns)


CURVE_METRICS = ("deletion_curve", "insertion_curve")
CURVE_KEYS = ["explainer", "similarity", "step_index", "timestep", "metric", "x"]
MEAN_ITEM = "mean"  # the prompt_id of streamed mean-curve rows


class CurveMeans:
    """Per-point curve rows reduced while items stream by: each explainer's, similarity's and step's mean curve
    over items, so a job's summaries need memory flat in the number of items (the per-item curves stay on disk)."""

    def __init__(self):
        self.sums: pd.DataFrame | None = None

    def add(self, rows: pd.DataFrame) -> None:
        curves = rows[rows.metric.isin(CURVE_METRICS)]
        if curves.empty:
            return
        part = curves.groupby(CURVE_KEYS, dropna=False, observed=True).value.agg(["sum", "count"])
        self.sums = part if self.sums is None else self.sums.add(part, fill_value=0)

    def rows(self, columns: dict[str, str] = COLUMNS) -> pd.DataFrame:
        """The mean curves as result rows of one pseudo-item per step (``prompt_id`` :data:`MEAN_ITEM`; ``prompt``
        says over how many items)."""
        if self.sums is None:
            return to_frame([], columns)
        df = self.sums.reset_index()
        df = df.assign(value=df["sum"] / df["count"], prompt_id=MEAN_ITEM, seed=0,
                       prompt=[f"mean of {int(n)} items" for n in df["count"]])
        return to_frame(df.drop(columns=["sum", "count"]), columns)
