"""How far a study has got, read from its run folders without training anything.

A run folder (``<runs>/<phase>/<variant>/seed<k>/<stage>/``, see :mod:`qmimic.studies.runner`)
is finished once it holds ``results.json``, started once ``qmimic.train`` wrote its resolved
``config.yaml`` (running now, or cut short and resumed by the next study command), and waiting
before that. A started run's epoch is the highest one its CSV logs (``csv/*.csv``, the files
kept from before a resume included) have reached.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from qmimic.metrics.names import TEST, VOC07_MAP, key
from qmimic.runs.stage_runs import stage_dir
from qmimic.runs.summary import markdown_table
from qmimic.stages import Stage
from qmimic.studies.runner import variant_out
from qmimic.studies.variants import Variant

FINISHED, STARTED, WAITING = "finished", "started", "waiting"


@dataclass(frozen=True)
class RunProgress:
    """Where one run stands.

    Attributes:
        state: ``finished``, ``started`` or ``waiting``.
        epoch: a started run's current epoch, counted from 1 (``None`` before its first log).
        max_epochs: the epochs it trains in all (started runs).
        voc07_map: a finished run's test VOC07 mAP in points, where it reports one.
        linked_to: for a folder that is another run's (a shared teacher's, or the defaults' run
            a variant reuses), what it links to (``seed 1``, ``defaults``); else ``None``.
    """

    state: str
    epoch: int | None = None
    max_epochs: int | None = None
    voc07_map: float | None = None
    linked_to: str | None = None

    def cell(self) -> str:
        """The run as one table cell: ``26.7``, ``epoch 12/20``, ``starting (20 epochs)``,
        ``waiting``; what it links to after a linked one, ``26.7 (seed 1)``."""
        if self.state == FINISHED:
            text = "done" if self.voc07_map is None else f"{self.voc07_map:.1f}"
        elif self.state == STARTED:
            total = self.max_epochs or "?"
            text = (
                f"starting ({total} epochs)"
                if self.epoch is None
                else f"epoch {self.epoch}/{total}"
            )
        else:
            text = WAITING
        return text if self.linked_to is None else f"{text} ({self.linked_to})"


def _logged_epoch(folder: Path) -> int | None:
    """The highest epoch (from 1) any of the run's CSV logs reached, or ``None``."""
    highest = None
    for path in sorted((folder / "csv").glob("*.csv")):
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                value = (row.get("epoch") or "").strip()
                if value.isdigit():
                    highest = max(highest or 0, int(value) + 1)
    return highest


def run_progress(folder: Path, linked_to: str | None = None) -> RunProgress:
    """Where the run in ``folder`` stands (see the module docstring). A folder that links to
    another run's says what it links to (``linked_to`` names it for a link not made yet)."""
    if folder.is_symlink():
        target = folder.resolve()
        linked_to = target.parent.name.replace("seed", "seed ")
        if target.parent.name == folder.parent.name:  # same seed: another variant's run
            linked_to = target.parent.parent.name
    results = folder / "results.json"
    if results.is_file():
        value = json.loads(results.read_text()).get(key(TEST, VOC07_MAP))
        points = None if value is None else 100 * float(value)
        return RunProgress(FINISHED, voc07_map=points, linked_to=linked_to)
    config = folder / "config.yaml"
    if not config.is_file():
        return RunProgress(WAITING, linked_to=linked_to)
    max_epochs = OmegaConf.select(OmegaConf.load(config), "trainer.max_epochs")
    return RunProgress(STARTED, _logged_epoch(folder), max_epochs, linked_to=linked_to)


def progress_report(
    runs: Path,
    phase: str,
    variants: Sequence[Variant],
    seeds: Sequence[int],
    stages: Sequence[Stage],
    teacher_of: Mapping[int, int] | None = None,
) -> str:
    """A markdown table per variant (stages by seeds) and a count of the runs finished.

    ``teacher_of``: seed -> the seed whose teacher stages it shares (``--shared-teacher``,
    ``--teacher-block``); those stages show that seed's run, whether or not the link is made
    yet. Linked runs are counted once, where they train.
    """
    teacher_of = teacher_of or {}
    parts, finished, total = [], 0, 0
    for variant in variants:
        out = variant_out(runs, phase, variant)
        rows = []
        for stage in stages:
            cells = []
            for seed in seeds:
                first = teacher_of.get(seed, seed)
                if first != seed and not stage.student:
                    shared = stage_dir(out, first, stage.name)
                    cells.append(run_progress(shared, linked_to=f"seed {first}"))
                else:
                    cells.append(run_progress(stage_dir(out, seed, stage.name)))
            finished += sum(c.state == FINISHED and c.linked_to is None for c in cells)
            total += sum(c.linked_to is None for c in cells)
            rows.append([stage.name, *(c.cell() for c in cells)])
        header = ["stage", *(f"seed {s}" for s in seeds)]
        parts.append(f"{variant.name} ({out}):\n\n" + markdown_table(header, rows).rstrip("\n"))
    parts.append(
        f"{finished} of {total} runs finished (linked runs counted where they train); test "
        "VOC07 mAP in points for finished runs"
    )
    return "\n\n".join(parts) + "\n"
