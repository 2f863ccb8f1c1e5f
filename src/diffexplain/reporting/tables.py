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
