"""Logger factories whose defaults need a decision at run time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_method, instantiate
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import OmegaConf

from qmimic.log import get_logger

log = get_logger(__name__)


def wandb_is_configured() -> bool:
    """True when the user has given wandb credentials or chosen a mode explicitly."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def wandb_logger(*, offline: bool | None = None, **kwargs: Any) -> WandbLogger:
    """A ``WandbLogger`` that runs offline unless wandb has been configured on this machine.

    ``offline=None`` decides from the environment; True/False force the mode. Offline runs can
    be uploaded later with ``wandb sync <save_dir>/wandb/offline-run-*``.
    """
    if offline is None:
        offline = not wandb_is_configured()
    return WandbLogger(offline=offline, **kwargs)


def instantiate_loggers(configs: list, resume_id: str | None = None) -> list[Logger]:
    """The configured loggers; with ``resume_id`` (the wandb id a resumed checkpoint recorded)
    the wandb logger continues that wandb run (``id=resume_id, resume="allow"``) instead of
    starting a new one."""
    loggers = []
    for config in configs:
        continues = resume_id is not None and get_method(config._target_) is wandb_logger
        extra = {"id": resume_id, "resume": "allow"} if continues else {}
        loggers.append(instantiate(config, **extra))
    return loggers


def keep_csv_history(loggers: list[Logger]) -> list[Path]:
    """Move each CSV logger's existing ``metrics.csv`` aside, to ``metrics.before-resume-<k>.csv``
    beside it; returns the new paths.

    Call it on a resume, before the loggers write. Lightning's ``CSVLogger`` deletes a
    ``metrics.csv`` it finds in its folder, and on a resume that file holds every epoch before
    the cut; the resumed run's file then starts at the epoch it reruns. Only the process of rank
    0 writes CSV files, so only it moves them.
    """
    moved = []
    if rank_zero_only.rank != 0:
        return moved
    for logger in loggers:
        if not isinstance(logger, CSVLogger):
            continue
        metrics = Path(logger.log_dir) / "metrics.csv"
        if not metrics.is_file():
            continue
        k = 1
        while (kept := metrics.with_name(f"metrics.before-resume-{k}.csv")).exists():
            k += 1
        metrics.rename(kept)
        log.info("resuming: the metrics logged before it are kept in %s", kept)
        moved.append(kept)
    return moved


def _sweep() -> tuple[str, int] | None:
    """``(sweep directory name, job number)`` inside a Hydra multirun job, else None."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return Path(hydra_cfg.sweep.dir).name, int(hydra_cfg.job.num)


def run_group(task_name: str) -> str:
    """Logger group: the task name, plus the sweep's name inside a multirun, so that the jobs of
    one sweep form one group (``${run_group:${task_name}}`` in the logger configs)."""
    sweep = _sweep()
    return task_name if sweep is None else f"{task_name}-sweep-{sweep[0]}"


def run_name(task_name: str, seed: int) -> str:
    """Logger run name: task and seed, plus the job number inside a multirun."""
    sweep = _sweep()
    job = "" if sweep is None else f"-job{sweep[1]}"
    return f"{task_name}{job}-seed{seed}"


def register_resolvers() -> None:
    """Make ``run_group`` and ``run_name`` usable in configs (idempotent)."""
    for name, function in (("run_group", run_group), ("run_name", run_name)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, function)
