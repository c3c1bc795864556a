"""Training the study's runs: every stage for every seed and variant, seeds side by side.

Runs live under ``<runs>/<phase>/<variant folder>/seed<k>/<stage>/`` and are ordinary
``qmimic.train`` runs (:mod:`qmimic.runs.stage_runs`): finished ones are found again and not
retrained, and a run cut short resumes from its ``last.ckpt``, so the study picks up where it
stopped. A variant's stage that its overrides do not reach is a link to the defaults' run. The
runs of every seed are planned first (:func:`plan_seed`), then trained in lanes side by side,
each run as soon as the runs it reads have finished (:func:`run_tasks`).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from qmimic.log import get_logger
from qmimic.metrics.names import MAP, TEST, VOC07_MAP, key
from qmimic.runs.stage_runs import overrides_for, run_stage, stage_dir
from qmimic.stages import Stage
from qmimic.studies.variants import Variant, reused_stages

log = get_logger("qmimic.study")

METRICS = (key(TEST, VOC07_MAP), key(TEST, MAP))
INTERRUPTED = 130  # the exit status of a run stopped by Ctrl-C (SIGINT)


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


@dataclass(frozen=True)
class Task:
    """One run to train: ``stage`` of ``seed`` with ``overrides``, its folder under ``out``.

    ``needs`` are the resolved run folders it reads checkpoints from (links followed): the task
    waits until the tasks that train them have finished."""

    stage: Stage
    seed: int
    out: Path
    overrides: tuple[str, ...]
    needs: tuple[Path, ...]

    @property
    def folder(self) -> Path:
        return stage_dir(self.out, self.seed, self.stage.name).resolve()

    @property
    def label(self) -> str:
        return f"[seed {self.seed}] {self.out.name} / {self.stage.name}"


def plan_seed(
    seed: int,
    variants: Sequence[Variant],
    stages: Sequence[Stage],
    runs: Path,
    phase: str,
    schedule: Sequence[str],
    all_defaults: bool = True,
    shared_from: int | None = None,
) -> list[Task]:
    """The runs of one seed, in training order: every stage of the defaults, then of each other
    variant; the links to runs trained elsewhere are made on the way.

    ``schedule`` overrides reach every variant. ``all_defaults=False`` plans only the defaults'
    stages that another variant links to (an ablation that replaces the teacher needs none).
    ``shared_from``: the seed whose teacher stages (every stage that is not a student) this seed
    shares: they become links to that seed's runs (planned by :func:`plan_shared_teachers`);
    only the students are planned here.
    """
    defaults_out = variant_out(runs, phase, Variant())
    swept = [v for v in variants if v.overrides]
    linked = set().union(*(reused_stages(v, stages) for v in swept))
    tasks = []
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
            needs = tuple(stage_dir(out, seed, s).resolve() for s in stage.needs.values())
            overrides = overrides_for(stage, stages, [*schedule, *variant.overrides])
            tasks.append(Task(stage, seed, out, tuple(overrides), needs))
    return tasks


def plan_shared_teachers(
    first: int, plan: Callable[..., list[Task]], stages: Sequence[Stage]
) -> list[Task]:
    """The teacher stages (every stage that is not a student) of seed ``first``, which the other
    seeds then share (``plan_seed(..., shared_from=first)``); ``plan(seed, stages)`` plans the
    given stages for a seed."""
    return plan(first, stages=[s for s in stages if not s.student])


def run_tasks(
    tasks: Sequence[Task],
    jobs: int = 1,
    runner: Callable[..., dict] = run_stage,
) -> None:
    """Train ``tasks`` in ``jobs`` lanes side by side, the CPU threads shared out between them
    through ``OMP_NUM_THREADS``.

    A run planned twice trains once (the shared teacher's seed plans its teacher stages again).
    A free lane takes the first task in ``tasks`` order whose inputs are trained, preferring one
    that reads another run's checkpoint: so the students that read no teacher train beside a
    teacher, no lane waits while another seed still has work, and the runs that need a
    teacher's checkpoint finish first (should the machine be lost, only runs that read no
    checkpoint are left, and they restart on their own). ``runner`` trains one run (the real
    :func:`run_stage`, which skips finished runs and resumes cut ones; tests pass a fake). A
    failing run lets the runs that do not depend on it finish, then stops the study with its
    error. Ctrl-C (or a run that ends with the interrupted status 130) starts no further run:
    the lanes end once their runs in progress have stopped, and the interruption is raised.
    """
    # Written by hand: graphlib.TopologicalSorter hands out the ready nodes of a graph but knows
    # no failed input and leaves the lanes and the order among ready runs to the caller, which
    # is all this function does.
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = {"OMP_NUM_THREADS": str(threads)} if jobs > 1 else {}
    waiting: list[Task] = []
    for task in tasks:  # each run once, at its first place
        if all(task.folder != other.folder for other in waiting):
            waiting.append(task)
    producers = {task.folder for task in waiting}
    finished: set[Path] = set()
    failed: set[Path] = set()
    errors: list[BaseException] = []
    ready = threading.Condition()
    stop = threading.Event()  # interrupted: hand out no more runs

    def stop_lanes() -> None:
        with ready:
            stop.set()
            ready.notify_all()

    def blocked(task: Task) -> bool:
        return any(need in failed for need in task.needs)

    def runnable(task: Task) -> bool:
        return all(need in finished or need not in producers for need in task.needs)

    def next_task() -> Task | None:
        with ready:
            while not stop.is_set():
                for task in [t for t in waiting if blocked(t)]:  # its input failed: never runs
                    waiting.remove(task)
                    failed.add(task.folder)
                    log.error("%s: not trained, an input run failed", task.label)
                    ready.notify_all()
                candidates = [t for t in waiting if runnable(t)]
                task = next((t for t in candidates if t.needs), next(iter(candidates), None))
                if task is not None:
                    waiting.remove(task)
                    return task
                if not waiting:
                    return None
                ready.wait()
            return None

    def lane() -> None:
        while (task := next_task()) is not None:
            started = time.monotonic()
            try:
                runner(task.stage, task.seed, task.out, list(task.overrides), env=env,
                       quiet=jobs > 1)  # fmt: skip
            except KeyboardInterrupt:  # Ctrl-C in this thread (one lane): stop at once
                stop_lanes()
                raise
            except Exception as error:  # re-raised once the other lanes have finished
                with ready:
                    failed.add(task.folder)
                    errors.append(error)
                    ready.notify_all()
                if getattr(error, "exit_code", None) == INTERRUPTED:  # the run got the Ctrl-C
                    stop_lanes()
                continue
            log.info("%s: ready (%.1f min)", task.label, (time.monotonic() - started) / 60)
            with ready:
                finished.add(task.folder)
                ready.notify_all()

    if jobs <= 1:
        lane()
    else:
        pool = ThreadPoolExecutor(max_workers=jobs)
        try:
            for future in [pool.submit(lane) for _ in range(jobs)]:
                future.result()
        except KeyboardInterrupt:  # only the main thread hears Ctrl-C; the runs got it too
            stop_lanes()
            raise
        finally:
            pool.shutdown(wait=True)
    if errors:
        raise errors[0]


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
