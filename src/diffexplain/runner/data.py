"""The DataModules that hand items to ``trainer.predict``: one base that splits the items left to do over ranks,
and the prompt items of the diffusion pipelines."""

from __future__ import annotations

import math
from collections.abc import Sequence

import lightning as L
from torch.utils.data import DataLoader

from diffexplain.errors import check
from diffexplain.items import prompt_items


def _collate(batch: list) -> list:
    return batch


class ItemDataModule(L.LightningDataModule):
    """Items to compute (``items``), of which ``todo`` are not finished yet.

    Each rank gets its own contiguous share of ``todo``, padded with ``None`` to the same length on every rank, so a
    run with fewer items than ranks finishes (idle ranks see only padding, which the runner skips). The Trainer runs
    with ``use_distributed_sampler=False``.
    """

    def __init__(self, items: list, batch_size: int = 1):
        super().__init__()
        check(isinstance(batch_size, int) and batch_size >= 1, "data.batch_size", batch_size, "an integer >= 1")
        self.items, self.batch_size = list(items), batch_size
        self.todo = list(self.items)

    def skip(self, done_ids: set[str]) -> None:
        """Leave out items already computed (resuming an interrupted run)."""
        self.todo = [it for it in self.items if it.item_id not in done_ids]

    def rank_share(self, rank: int, world_size: int) -> list:
        """This rank's items, padded with None to ceil(len(todo) / world_size)."""
        per_rank = max(1, math.ceil(len(self.todo) / world_size))
        share = self.todo[rank * per_rank: (rank + 1) * per_rank]
        return share + [None] * (per_rank - len(share))

    def predict_dataloader(self) -> DataLoader:
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        return DataLoader(self.rank_share(rank, world), batch_size=self.batch_size, shuffle=False,
                          collate_fn=_collate)


class PromptDataModule(ItemDataModule):
    """Prompts × seeds. Prompts come from ``prompts`` (CLI list), else ``prompt_file``, else the Shapes grammar
    (``num_objects`` 1 or 2 picks one- or two-object prompts)."""

    def __init__(self, prompts: list[str] | None = None, prompt_file: str | None = None, num_prompts: int | None = 4,
                 seeds: Sequence[int] = (0,), negative_prompt: str = "", batch_size: int = 1,
                 num_objects: int | None = None, offset: int = 0):
        check(num_prompts is None or (isinstance(num_prompts, int) and num_prompts >= 1), "data.num_prompts",
              num_prompts, "an integer >= 1 or null (all)")
        check(isinstance(seeds, Sequence) and len(seeds) >= 1 and all(isinstance(s, int) and 0 <= s < 2**63
                                                                      for s in seeds),
              "data.seeds", seeds, "a non-empty list of integers in [0, 2^63)")
        if prompts is not None:
            check(isinstance(prompts, Sequence) and not isinstance(prompts, str) and len(prompts) > 0
                  and all(isinstance(p, str) and p.strip() for p in prompts),
                  "data.prompts", prompts, "a non-empty list of strings, e.g. '[a red circle]'")
        super().__init__(prompt_items(prompts, prompt_file, num_prompts, seeds, negative_prompt, num_objects,
                                      offset), batch_size)


__all__ = ["ItemDataModule", "PromptDataModule"]
