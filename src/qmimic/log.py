"""The run's messages through Python ``logging``, from global rank 0 only.

Hydra's job logging sends every record to the console and to the run's ``<command>.log``
(``qmimic/conf/hydra/job_logging/qmimic.yaml``: plain console lines, timestamped file lines),
so what a command says to its user is also in its run directory. Under DDP every process runs
the command; :func:`get_logger` keeps the messages of processes 1..N-1 out, as Lightning's own
``rank_zero_info`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.utilities import rank_zero_only

# Libraries that give their loggers a console handler of their own: those that do not propagate
# would miss the run's log file, those that do would print every message twice.
LIBRARY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric", "torchmetrics")


class BelowLevel(logging.Filter):
    """Passes records below ``level``: the console's stdout handler leaves warnings and errors
    to the stderr handler."""

    def __init__(self, level: int | str = logging.WARNING):
        super().__init__()
        self.level = logging.getLevelName(level) if isinstance(level, str) else level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < self.level


class RankZeroLogger(logging.LoggerAdapter):
    """A logger whose records are dropped on every process but global rank 0."""

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if getattr(rank_zero_only, "rank", 0) == 0:
            super().log(level, msg, *args, **kwargs)


def get_logger(name: str) -> RankZeroLogger:
    """``logging.getLogger(name)`` behind :class:`RankZeroLogger`."""
    return RankZeroLogger(logging.getLogger(name), {})


def route_library_logs() -> None:
    """Send Lightning's messages through the root logger's handlers (console and log file)
    instead of Lightning's own console handler. Call it once logging is configured."""
    root = logging.getLogger()
    if not root.handlers:
        return
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        library.handlers.clear()
        library.propagate = True


def format_metrics(metrics: Mapping[str, float]) -> str:
    """One ``name  value`` line per metric, for the console and the log."""
    width = max((len(k) for k in metrics), default=0)
    return "\n".join(f"  {k:<{width}}  {v:.4f}" for k, v in sorted(metrics.items()))
