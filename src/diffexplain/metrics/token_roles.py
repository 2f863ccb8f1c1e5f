"""Token roles: which kind of word (colour / shape / connective, or subject / relation / object) holds the
cross-attention at each step — the paper's cross-attention "correlation quantification"."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from diffexplain.errors import UserError, check


def attention_shares(maps: torch.Tensor, words: list[str]) -> dict[str, float]:
    """Each word's share of the prompt words' attention at one step: mean of its map over Σ of all words' means."""
    mass = maps.float().mean(dim=(-2, -1)).clamp(min=0)
    total = mass.sum().item()
    return {w: (m / total if total > 0 else 0.0) for w, m in zip(words, mass.tolist())}


def role_shares(shares: dict[str, float], roles: dict[str, str]) -> dict[str, float]:
    """Sum the word shares per role; repeated words (``a#2``) take the role of their word."""
    out: dict[str, float] = {}
    for word, share in shares.items():
        role = roles.get(word.split("#")[0])
        if role is not None:
            out[role] = out.get(role, 0.0) + share
    return out


def load_roles(path: str | None) -> dict[str, dict[str, str]]:
    """``{prompt: {word: role}}`` from a user's JSON of tagged prompts (empty without a file)."""
    if path is None:
        return {}
    p = Path(path)
    check(p.is_file(), "explainer.roles_file", path, "an existing JSON file {prompt: {word: role}}")
    data = json.loads(p.read_text())
    check(isinstance(data, dict) and all(isinstance(v, dict) for v in data.values()), "explainer.roles_file", path,
          "a JSON object mapping each prompt to {word: role}")
    return data


def roles_for(prompt: str, tagged: dict[str, dict[str, str]]) -> dict[str, str] | None:
    """Word roles of ``prompt``: the user's tags, else the Shapes grammar's, else None."""
    if prompt in tagged:
        return tagged[prompt]
    from diffexplain.world import word_roles

    try:
        return word_roles(prompt)
    except UserError:
        return None


def stage_table(results: pd.DataFrame, stages: int = 3) -> pd.DataFrame:
    """Mean role share per schedule stage (early / middle / late thirds of the steps) from ``role_share`` rows.

    ``results`` may hold several jobs (e.g. a schedule sweep) told apart by a ``schedule`` column; several
    explainers (raw attention vs relevance) get one block each.
    """
    df = results[results.metric == "role_share"].copy()
    group = (["explainer"] if df.explainer.nunique() > 1 else []) + (["schedule"] if "schedule" in df else [])
    n = df.groupby(group + ["prompt_id"])["step_index"].transform("max") + 1
    names = ["early", "middle", "late"] if stages == 3 else [f"stage{k}" for k in range(stages)]
    df["stage"] = pd.Categorical([names[min(int(s * stages // m), stages - 1)] for s, m in zip(df.step_index, n)],
                                 names, ordered=True)
    return df.groupby(group + ["stage", "token"], observed=True, dropna=False)["value"].mean().unstack("token")
