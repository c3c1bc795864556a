"""The summary of a Hydra sweep (``python -m qmimic.train -m ...``), written when it ends.

Hydra gives each job its own directory under the sweep directory, holding the job's
``results.json`` and ``.hydra/overrides.yaml``. :class:`SweepSummary` groups the jobs by the
values that differ between them (seeds pooled, so ``seed=0,1,2`` yields mean and spread) and
writes ``summary.md`` and ``summary.json`` into the sweep directory.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from qmimic.log import get_logger
from qmimic.runs.summary import write_summary

log = get_logger(__name__)

POOLED = {"seed"}  # overrides whose values are repetitions, not sweep points


def job_overrides(job_dir: Path) -> dict[str, str]:
    """``key -> value`` of the command-line overrides a job ran with."""
    listed = OmegaConf.load(job_dir / ".hydra" / "overrides.yaml")
    return dict(str(item).split("=", 1) for item in listed if "=" in str(item))


def sweep_groups(sweep_dir: Path) -> dict[str, list[dict]]:
    """Finished jobs' results grouped by the overrides that vary between jobs (``seed`` aside)."""
    jobs = []
    for results_path in sorted(sweep_dir.glob("*/results.json"), key=_job_order):
        jobs.append((job_overrides(results_path.parent), json.loads(results_path.read_text())))
    keys = {k for overrides, _ in jobs for k in overrides}
    varying = sorted(
        k for k in keys - POOLED if len({overrides.get(k) for overrides, _ in jobs}) > 1
    )
    groups: dict[str, list[dict]] = {}
    for overrides, results in jobs:
        label = " ".join(f"{k}={overrides.get(k, '-')}" for k in varying) or "all jobs"
        groups.setdefault(label, []).append(results)
    return groups


def _job_order(path: Path) -> tuple[int, str]:
    name = path.parent.name
    return (int(name), name) if name.isdigit() else (1 << 30, name)


class SweepSummary(Callback):
    """Hydra callback: at the end of a multirun, tabulate its jobs' test metrics."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        groups = sweep_groups(sweep_dir)
        if not groups:
            log.warning("sweep %s: no job wrote results.json; nothing to summarize", sweep_dir)
            return
        table = write_summary(sweep_dir, groups, label="sweep point")
        log.info("sweep summary (%s, summary.json):\n%s", sweep_dir / "summary.md", table)
