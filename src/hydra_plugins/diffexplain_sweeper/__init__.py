"""``hydra/sweeper=excluding``: Hydra's basic sweeper without the combinations a sweep cannot run.

A cartesian sweep over models and explainers may cross pairs that do not exist (ConceptAttention on a UNet has no
joint attention): ``hydra.sweeper.exclude`` lists them as ``{key: value}`` rules, and a job whose overrides match every
pair of a rule is not launched — not counted as failed, and the kept jobs are numbered 0, 1, … as usual. (Hydra
instantiates sweepers only from its ``hydra_plugins`` namespace, hence this package's place.)
"""

from __future__ import annotations

import logging

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

log = logging.getLogger(__name__)


class ExcludingSweeper(BasicSweeper):
    def __init__(self, max_batch_size: int | None = None, params: dict | None = None, exclude: list | None = None):
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.exclude = [{str(k): str(v) for k, v in dict(rule).items()} for rule in exclude or []]

    def excluded(self, job: list[str]) -> bool:
        pairs = dict(o.split("=", 1) for o in job if "=" in o)
        return any(all(pairs.get(k) == v for k, v in rule.items()) for rule in self.exclude)

    def get_job_batch(self):
        batch = super().get_job_batch()
        kept = [job for job in batch if not self.excluded(list(job))]
        for job in batch:
            if self.excluded(list(job)):
                log.info("not launched (hydra.sweeper.exclude): %s", " ".join(job))
        return kept
