"""The tidy results table of the output contract: one row per number."""

from __future__ import annotations

import pandas as pd

COLUMNS = {
    "prompt_id": "string", "prompt": "string", "seed": "int64", "step_index": "Int64", "timestep": "Float64",
    "explainer": "string", "similarity": "string", "metric": "string", "value": "float64", "token": "string",
}


def row(item, metric: str, value: float, step_index: int | None = None, timestep: float | None = None,
        explainer: str | None = None, similarity: str | None = None, token: str | None = None) -> dict:
    """One result row for a :class:`~diffexplain.runner.data.PromptItem`."""
    return {"prompt_id": item.prompt_id, "prompt": item.prompt, "seed": item.seed, "step_index": step_index,
            "timestep": timestep, "explainer": explainer, "similarity": similarity, "metric": metric,
            "value": float(value), "token": token}


def to_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows → a DataFrame with the contract's columns and dtypes (nullable where a column may be empty)."""
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return df.astype(COLUMNS)
