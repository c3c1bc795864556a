"""Learning curves of a study's runs: the validation VOC07 mAP after each epoch, averaged over the
seeds of a block, read from each run's CSV log (a resumed run's earlier rows included)."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

from qmimic.metrics.names import VAL, VOC07_MAP, key

CURVE_KEY = key(VAL, VOC07_MAP)


def validation_curve(run_dir: Path, logged: str = CURVE_KEY) -> dict[int, float]:
    """``{epoch: value}`` of ``logged`` in the run's ``csv/metrics*.csv`` (``{}`` without them);
    a value logged again for an epoch (a resumed run) replaces the earlier one."""
    folder = Path(run_dir) / "csv"
    files = sorted(folder.glob("metrics.before-resume-*.csv")) + [folder / "metrics.csv"]
    curve: dict[int, float] = {}
    for path in files:
        if not path.is_file():
            continue
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                if row.get(logged) and row.get("epoch"):
                    curve[int(float(row["epoch"]))] = float(row[logged])
    return curve


def block_curves(results: dict[str, list[dict]]) -> dict[str, list[list[float]]]:
    """stage -> ``[[epoch, mean over seeds], ...]`` for the epochs every seed's run validated;
    stages whose runs logged no curve are left out. ``results``: each stage's results.json
    contents, one per seed (their ``output_dir`` locates the logs)."""
    curves: dict[str, list[list[float]]] = {}
    for stage, runs in results.items():
        per_seed = [validation_curve(Path(r["output_dir"])) for r in runs if "output_dir" in r]
        if not per_seed or not all(per_seed):
            continue
        epochs = sorted(set.intersection(*(set(c) for c in per_seed)))
        curves[stage] = [[e, statistics.mean(c[e] for c in per_seed)] for e in epochs]
    return curves
