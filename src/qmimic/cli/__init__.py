"""The commands, each a ``main``: ``train``, ``evaluate``, ``predict``, ``export`` (Hydra apps)
and ``pipeline``. ``python -m qmimic.<command>`` and the ``qmimic-<command>`` console scripts
run them. Nothing in the library imports this package."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TypeVar

import hydra
from omegaconf import DictConfig

from qmimic.conf import CONFIG_PATH
from qmimic.errors import exit_on_user_error
from qmimic.runs.log import route_library_logs

R = TypeVar("R")


def hydra_command(config_name: str) -> Callable[[Callable[[DictConfig], R]], Callable[[], R]]:
    """Make ``run(cfg)`` a command: ``hydra.main`` over the package's ``config_name`` config,
    a :class:`~qmimic.errors.UserError` as one ``error:`` line, and library messages (Lightning's)
    in the run's log. The job (and log file) is named after ``run``'s module."""

    def decorate(run: Callable[[DictConfig], R]) -> Callable[[], R]:
        @hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name=config_name)
        @exit_on_user_error
        @wraps(run)
        def main(cfg: DictConfig) -> R:
            route_library_logs()
            return run(cfg)

        return main

    return decorate
