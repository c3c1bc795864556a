"""One stage of the method as a ``qmimic.train`` run in its own process, found again when done.

The pipeline and the study lay runs out as ``<out>/seed<k>/<stage>/``; a stage whose
``results.json`` exists is finished and is not run again, and one with a ``checkpoints/last.ckpt``
but no results was cut short and resumes from it. A finished run is reused only while its saved
config (``.hydra/config.yaml``) is what the same command composes now: a run trained before a
recipe or override changed is refused, not passed off as a run of the new settings.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from omegaconf import OmegaConf

from qmimic.conf import load_config
from qmimic.errors import StageFailedError, UserError
from qmimic.log import get_logger
from qmimic.stages import Stage

log = get_logger("qmimic.pipeline")


def scope_names(scope: str, known: set[str]) -> set[str] | None:
    """The stages a ``SCOPE:`` prefix names (``qmimic``, ``students``, ``qteacher,qmimic``), or
    ``None`` when it is not a scope (e.g. a value holding a colon)."""
    names = set(scope.split(","))
    return names if names <= known else None


def overrides_for(stage: Stage, stages: Sequence[Stage], overrides: Sequence[str]) -> list[str]:
    """The overrides that reach ``stage``: plain ``key=value`` ones reach every stage;
    ``STAGE:key=value`` only that stage (``A,B:key=value`` stages A and B), and
    ``students:key=value`` every student stage."""
    known = {s.name for s in stages} | {"students"}
    chosen = []
    for override in overrides:
        scope, sep, rest = override.partition(":")
        names = scope_names(scope, known) if sep else None
        if names is None:
            chosen.append(override)
        elif stage.name in names or ("students" in names and stage.student):
            chosen.append(rest)
    return chosen


def stage_dir(out: Path, seed: int, stage: str) -> Path:
    """Where the run of ``stage`` for ``seed`` lives under ``out``."""
    return out / f"seed{seed}" / stage


# Hydra's compose API keeps one global state: the study's lanes (threads) compose one at a time.
_COMPOSE_LOCK = threading.Lock()


def _flatten(node: object, prefix: str = "") -> dict[str, object]:
    """A nested config container as ``{"dotted.key": leaf}``."""
    if isinstance(node, dict) and node:
        flat: dict[str, object] = {}
        for key, value in node.items():
            flat.update(_flatten(value, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): node}


def changed_settings(folder: Path, command: Sequence[str], inputs: Collection[str]) -> list[str]:
    """The dotted keys whose value in the run saved in ``folder`` differs from what the
    ``qmimic.train`` arguments ``command`` compose to now (both unresolved), ``inputs`` (the
    checkpoints handed over, whose own runs are checked on their own) left out. ``[]`` when
    the run saved no config."""
    saved_path = folder / ".hydra" / "config.yaml"
    if not saved_path.is_file():
        return []
    with _COMPOSE_LOCK:
        now = OmegaConf.to_container(load_config("train", command))
    saved = OmegaConf.to_container(OmegaConf.load(saved_path))
    flat_now, flat_saved = _flatten(now), _flatten(saved)
    keys = sorted(set(flat_now) | set(flat_saved))
    return [
        k
        for k in keys
        if k.split(".")[0] not in inputs
        and flat_now.get(k, "<unset>") != flat_saved.get(k, "<unset>")
    ]


def check_reusable(folder: Path, stage: Stage, command: Sequence[str]) -> None:
    """Raise :class:`UserError` when the finished run in ``folder`` was trained with settings
    other than those ``command`` asks for now."""
    changed = changed_settings(folder, command, {"ckpt_path", *stage.needs})
    if changed:
        shown = ", ".join(changed[:5]) + (
            f" and {len(changed) - 5} more" if len(changed) > 5 else ""
        )
        raise UserError(
            f"{folder} holds a finished {stage.name} run trained with other settings ({shown} "
            "differ from the current config); move that folder away to train the stage again, "
            "or write the runs to another output folder"
        )


def wait_through_ctrl_c(process: subprocess.Popen, grace_s: float = 30.0) -> int:
    """``process``'s exit status. On Ctrl-C, let it stop on its own first, then re-raise.

    A terminal's Ctrl-C reaches the whole process group, so the training run got it too and is
    saving ``interrupted.ckpt``; ``subprocess.run`` would kill it after a quarter of a second.
    If it still runs after ``grace_s`` (only this process was signalled), it gets SIGINT, and
    after another ``grace_s`` it is killed.
    """
    try:
        return process.wait()
    except KeyboardInterrupt:
        if not _ends_within(process, grace_s):
            process.send_signal(signal.SIGINT)
            if not _ends_within(process, grace_s):
                process.kill()
                process.wait()
        raise


def _ends_within(process: subprocess.Popen, seconds: float) -> bool:
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


def run_stage(
    stage: Stage,
    seed: int,
    out: Path,
    overrides: Sequence[str],
    env: Mapping[str, str] | None = None,
    quiet: bool = False,
) -> dict:
    """Run one stage unless its results exist; returns its results.json content.

    Args:
        overrides: those that reach this stage (see :func:`overrides_for`).
        env: extra environment variables for the run (e.g. ``OMP_NUM_THREADS``).
        quiet: send the run's console output to ``<run>/console.log`` instead of this console
            (for runs side by side).
    """
    folder = stage_dir(out, seed, stage.name)
    results_path = folder / "results.json"
    inputs = [
        f"{key}={stage_dir(out, seed, source) / 'checkpoints' / 'last.ckpt'}"
        for key, source in stage.needs.items()
    ]
    named = [f"+experiment={stage.experiment}", f"seed={seed}"]
    if results_path.is_file():
        check_reusable(folder, stage, [*named, *inputs, *overrides])
        log.info("[seed %d] %s: done before, skipped", seed, stage.name)
        return json.loads(results_path.read_text())
    interrupted = folder / "checkpoints" / "last.ckpt"
    if interrupted.is_file():  # a stage cut short earlier: resume it
        inputs.append(f"ckpt_path={interrupted}")
    command = [
        sys.executable,
        "-m",
        "qmimic.train",
        *named,
        f"hydra.run.dir={folder}",
        *inputs,
        *overrides,
    ]
    log.info("[seed %d] %s: %s", seed, stage.name, " ".join(command[2:]))
    folder.mkdir(parents=True, exist_ok=True)
    console = folder / "console.log"
    with open(console, "a") if quiet else contextlib.nullcontext() as sink:
        process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdout=sink,
            stderr=subprocess.STDOUT if quiet else None,
        )
        returncode = wait_through_ctrl_c(process)
    if returncode != 0:
        where = console if quiet else folder
        raise StageFailedError(
            f"stage {stage.name} (seed {seed}) failed; its log is in {where}. "
            "Fix the cause and run the same command again to resume.",
            returncode,
        )
    return json.loads(results_path.read_text())
