"""The commands, each a ``main``: ``train``, ``evaluate``, ``predict``, ``export`` (Hydra apps)
and ``pipeline``. ``python -m qmimic.<command>`` and the ``qmimic-<command>`` console scripts
run them. Nothing in the library imports this package."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from functools import wraps
from typing import TypeVar

import hydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import OverrideParseException
from omegaconf import DictConfig

from qmimic.conf import CONFIG_PATH
from qmimic.errors import UserError, exit_on_user_error
from qmimic.io.results import check_output_folder
from qmimic.log import route_library_logs

R = TypeVar("R")

# Overrides that choose where a run writes; the default is ``paths.log_dir``'s ``outputs``.
OUTPUT_KEYS = ("hydra.run.dir", "hydra.sweep.dir", "paths.log_dir")
DEFAULT_LOG_DIR = "outputs"


def _overrides(argv: Sequence[str]) -> list[Override]:
    """The command line's overrides, parsed by Hydra's own override grammar (``+key=``,
    ``++key=``, quoting); flags and an override Hydra cannot parse are left out (Hydra reports
    the latter itself)."""
    parser = OverridesParser.create()
    parsed = []
    for arg in argv:
        if arg.startswith("-") or "=" not in arg:  # flags (-m, --cfg job) and their values
            continue
        try:
            parsed += parser.parse_overrides([arg])
        except OverrideParseException:
            continue
    return parsed


def _chosen_outputs(argv: Sequence[str]) -> dict[str, str]:
    """The output folders that the command line's overrides set. A sweep over folders or an
    interpolation is left to Hydra."""
    chosen = {}
    for override in _overrides(argv):
        value = override.value()
        if override.key_or_group in OUTPUT_KEYS and isinstance(value, str) and "${" not in value:
            chosen[override.key_or_group] = value
    return chosen


def check_output_overrides(argv: Sequence[str]) -> None:
    """Refuse an output folder that cannot be made (a file in its way, no write permission)
    before Hydra creates the run directory, which would fail with a traceback."""
    chosen = _chosen_outputs(argv)
    if not {"hydra.run.dir", "paths.log_dir"} & set(chosen):
        chosen["paths.log_dir"] = DEFAULT_LOG_DIR
    for key, value in chosen.items():
        check_output_folder(value, key)


def check_group_chosen(argv: Sequence[str], groups: Sequence[str]) -> None:
    """Refuse ``<group>.key=value`` overrides of a config group the command leaves unchosen
    unless the command line chooses it (``<group>=name``): Hydra would stop with "Key '<group>'
    is not in struct", which does not say what to do."""
    keys = [override.key_or_group for override in _overrides(argv)]
    for group in groups:
        nested = [k for k in keys if k.startswith(f"{group}.")]
        if nested and group not in keys:
            raise UserError(
                f"{nested[0]}= needs the {group} named as well: add {group}=<name> (e.g. "
                f"{group}=voc_cpu {nested[0]}=...); without {group}=, the checkpoint's own "
                f"{group} settings are used as saved"
            )


def hydra_command(
    config_name: str, unchosen_groups: Sequence[str] = ()
) -> Callable[[Callable[[DictConfig], R]], Callable[[], R]]:
    """Make ``run(cfg)`` a command: ``hydra.main`` over the package's ``config_name`` config,
    a :class:`~qmimic.errors.UserError` as one ``error:`` line, and library messages (Lightning's)
    in the run's log. The job (and log file) is named after ``run``'s module.
    ``unchosen_groups``: config groups the config leaves at ``null`` (see
    :func:`check_group_chosen`)."""

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
            check_group_chosen(sys.argv[1:], unchosen_groups)
            return main()

        return command

    return decorate
