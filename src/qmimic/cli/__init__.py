"""The commands, each a ``main``: ``train``, ``evaluate``, ``predict``, ``export`` (Hydra apps)
and ``pipeline``. ``python -m qmimic.<command>`` and the ``qmimic-<command>`` console scripts
run them. Nothing in the library imports this package."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from functools import wraps
from typing import TypeVar

import hydra
from omegaconf import DictConfig

from qmimic.conf import CONFIG_PATH
from qmimic.errors import exit_on_user_error
from qmimic.runs.log import route_library_logs
from qmimic.runs.results import check_output_folder

R = TypeVar("R")

# Overrides that choose where a run writes; the default is ``paths.log_dir``'s ``outputs``.
OUTPUT_KEYS = ("hydra.run.dir", "hydra.sweep.dir", "paths.log_dir")
DEFAULT_LOG_DIR = "outputs"


def check_output_overrides(argv: Sequence[str]) -> None:
    """Refuse an output folder that cannot be made (a file in its way, no write permission)
    before Hydra creates the run directory, which would fail with a traceback."""
    chosen = {}
    for arg in argv:
        key, sep, value = arg.lstrip("+").partition("=")
        if sep and key in OUTPUT_KEYS and "${" not in value:
            chosen[key] = value
    if not {"hydra.run.dir", "paths.log_dir"} & set(chosen):
        chosen["paths.log_dir"] = DEFAULT_LOG_DIR
    for key, value in chosen.items():
        check_output_folder(value, key)


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

        @exit_on_user_error
        @wraps(run)
        def command() -> R:
            check_output_overrides(sys.argv[1:])
            return main()

        return command

    return decorate
