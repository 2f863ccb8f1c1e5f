"""Batches that halve on out-of-memory (``batch_size: auto``) without changing a result.

A :class:`BatchSize` runs consecutive ranges ``[start, stop)`` of a piece of work through a function; with ``auto`` it
starts at :data:`~diffexplain.config.options.AUTO_BATCH_START` and, when the function runs out of memory (CUDA or the
CPU allocator), halves the size and retries the same range. The caller draws its random numbers outside the function,
so what is computed does not depend on the size that ran; ``used`` is the size that last ran (written to run.json).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from diffexplain.config.options import AUTO_BATCH_START, BATCH_SIZE_ALLOWED
from diffexplain.errors import check

_OOM_MESSAGES = ("out of memory", "can't allocate memory", "DefaultCPUAllocator")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says an allocation failed (torch.OutOfMemoryError, or a RuntimeError from the CPU allocator)."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error) for m in _OOM_MESSAGES)


def check_batch_size(key: str, value) -> None:
    """``value`` is an integer >= 1 or ``auto``."""
    check(value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1), key, value,
          BATCH_SIZE_ALLOWED)


class BatchSize:
    """``batch_size`` of one piece of work: an integer, or ``auto`` (halves on out-of-memory)."""

    def __init__(self, value, key: str = "batch_size"):
        check_batch_size(key, value)
        self.auto = value == "auto"
        self.size = AUTO_BATCH_START if self.auto else value
        self.used: int | None = None

    def run(self, total: int, fn: Callable[[int, int], None]) -> None:
        """Call ``fn(start, stop)`` over ``[0, total)`` in ranges of at most ``size``; ``fn`` must leave nothing behind
        when it raises (it is called again on the same range after an out-of-memory)."""
        start = 0
        while start < total:
            stop = min(start + self.size, total)
            try:
                fn(start, stop)
            except RuntimeError as error:  # torch.OutOfMemoryError is one
                if not (self.auto and self.size > 1 and is_out_of_memory(error)):
                    raise
                self.size //= 2
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            self.used = self.size
            start = stop
