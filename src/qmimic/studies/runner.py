"""Training the study's runs: every stage for every seed and variant, seeds side by side.

Runs live under ``<runs>/<phase>/<variant folder>/seed<k>/<stage>/`` and are ordinary
``qmimic.train`` runs (:mod:`qmimic.runs.stage_runs`): finished ones are found again and not
retrained, and a run cut short resumes from its ``last.ckpt``, so the study picks up where it
stopped. A variant's stage that its overrides do not reach is a link to the defaults' run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from qmimic.log import get_logger
from qmimic.metrics.names import MAP, TEST, VOC07_MAP, key
from qmimic.runs.stage_runs import overrides_for, run_stage, stage_dir
from qmimic.stages import Stage
from qmimic.studies.variants import Variant, reused_stages

log = get_logger("qmimic.study")

METRICS = (key(TEST, VOC07_MAP), key(TEST, MAP))


def variant_out(runs: Path, phase: str, variant: Variant) -> Path:
    """The folder of ``variant``'s runs in ``phase``."""
    return runs / phase / variant.folder


def link_stage(link: Path, target: Path) -> None:
    """Make the run folder ``link`` a link to the run folder ``target`` (kept if it exists)."""
    if link.is_symlink() or link.exists():
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target.resolve(), target_is_directory=True)


def link_to_defaults(defaults_out: Path, out: Path, seed: int, stage: str) -> None:
    """Make ``stage`` of ``out`` a link to the defaults' finished run of it."""
    link_stage(stage_dir(out, seed, stage), stage_dir(defaults_out, seed, stage))


def run_seed(
    seed: int,
    variants: Sequence[Variant],
    stages: Sequence[Stage],
    runs: Path,
    phase: str,
    schedule: Sequence[str],
    env: dict[str, str] | None = None,
    quiet: bool = False,
    runner: Callable[..., dict] = run_stage,
    all_defaults: bool = True,
    shared_from: int | None = None,
) -> None:
    """Every stage of the defaults, then of each other variant, for one seed.

    ``schedule`` overrides reach every variant; ``runner`` trains one stage (the real
    :func:`run_stage`; tests pass a fake). ``all_defaults=False`` trains only the defaults'
    stages that another variant links to (an ablation that replaces the teacher needs none).
    ``shared_from``: the seed whose teacher stages (every stage that is not a student) this
    seed shares: they become links to that seed's finished runs, which must exist (see
    :func:`run_shared_teachers`); only the students train.
    """
    defaults_out = variant_out(runs, phase, Variant())
    swept = [v for v in variants if v.overrides]
    linked = set().union(*(reused_stages(v, stages) for v in swept))
    for variant in [Variant(), *swept]:
        out = variant_out(runs, phase, variant)
        reused = reused_stages(variant, stages) if variant.overrides else set()
        for stage in stages:
            if not (variant.overrides or all_defaults or stage.name in linked):
                continue
            if stage.name in reused:
                link_to_defaults(defaults_out, out, seed, stage.name)
                continue
            if shared_from is not None and seed != shared_from and not stage.student:
                link_stage(
                    stage_dir(out, seed, stage.name), stage_dir(out, shared_from, stage.name)
                )
                continue
            overrides = overrides_for(stage, stages, [*schedule, *variant.overrides])
            started = time.monotonic()
            runner(stage, seed, out, overrides, env=env, quiet=quiet)
            log.info(
                "[seed %d] %s / %s: ready (%.1f min)",
                seed, variant.name, stage.name, (time.monotonic() - started) / 60,
            )  # fmt: skip


def run_shared_teachers(first: int, lane: Callable[..., None], stages: Sequence[Stage]) -> None:
    """Train the teacher stages (every stage that is not a student) of seed ``first``, which
    the other seeds then share (``run_seed(..., shared_from=first)``); ``lane(seed, stages)``
    runs the given stages for a seed."""
    lane(first, [s for s in stages if not s.student])


def run_all(seeds: Sequence[int], jobs: int, lane: Callable[[int, dict[str, str]], None]) -> None:
    """Run ``lane(seed, env)`` for every seed, ``jobs`` at a time, the CPU threads shared out
    between them through ``OMP_NUM_THREADS``. A failing seed lets the others finish, then stops
    the study with its error."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = {"OMP_NUM_THREADS": str(threads)} if jobs > 1 else {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(lane, seed, env) for seed in seeds]
    for future in futures:
        future.result()


def collect(out: Path, seeds: Sequence[int], stages: Sequence[Stage]) -> dict[str, list[dict]]:
    """Each stage's ``results.json``, one per seed in ``seeds`` order."""
    return {
        stage.name: [
            json.loads((stage_dir(out, seed, stage.name) / "results.json").read_text())
            for seed in seeds
        ]
        for stage in stages
    }


def metric_table(results: dict[str, list[dict]], key: str) -> dict[str, list[float]]:
    """stage -> the value of ``key`` per seed (stages missing it are left out)."""
    return {
        stage: [float(r[key]) for r in runs]
        for stage, runs in results.items()
        if runs and all(key in r for r in runs)
    }
