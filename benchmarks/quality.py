"""The quality sections of ``make bench``: the paper's VOC table rows and mAP against width.

Training goes through ``python -m qmimic.pipeline`` (one ordinary ``qmimic.train`` run per stage
and seed, finished stages skipped), so an interrupted benchmark resumes where it stopped and
its runs can be inspected like any other. Each function returns the section's part of
``bench/results.json`` (see ``benchmarks/report.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from qmimic.runs.summary import ordering_verdict, stat
from qmimic.stages import stage_names
from report import width_name

LABELS = {
    "teacher": "ResNet18-{w} teacher",
    "qteacher": "ResNet18-{w} quantized teacher",
    "scratch": "ResNet18-{w} from scratch",
    "quant": "ResNet18-{w} quantized only",
    "mimic": "ResNet18-{w} mimic",
    "qmimic": "ResNet18-{w} Quantization Mimic",
}


def run_pipeline(out: Path, seeds: list[int], stages: list[str], overrides: list[str]) -> None:
    """Train (or find finished) ``stages`` for ``seeds`` under ``out``; stops the benchmark with
    the pipeline's message when a stage fails."""
    command = [
        sys.executable, "-m", "qmimic.pipeline", "--out", str(out),
        "--seeds", *map(str, seeds), "--stages", *stages, *overrides,
    ]  # fmt: skip
    print(f"$ {' '.join(command[1:])}", flush=True)
    if subprocess.run(command).returncode != 0:
        raise SystemExit(f"error: training under {out} failed; run `make bench` again to resume")


def stage_results(out: Path, stage: str, seeds: list[int]) -> list[dict]:
    """``results.json`` of ``stage`` for each seed, the run's model width added."""
    runs = []
    for seed in seeds:
        folder = out / f"seed{seed}" / stage
        results = json.loads((folder / "results.json").read_text())
        results["width"] = float(OmegaConf.load(folder / "config.yaml").model.width)
        runs.append(results)
    return runs


def quality_row(stage: str, runs: list[dict]) -> dict:
    """One row of the quality table from one stage's runs (one per seed)."""
    metrics = {
        key: stat([float(r[key]) for r in runs])
        for key in ("test/voc07_map", "test/map")
        if all(key in r for r in runs)
    }
    return {
        "label": LABELS[stage].format(w=width_name(runs[0]["width"]).replace("/", "-")),
        "width": runs[0]["width"],
        "metrics": metrics,
        "parameters": runs[0]["parameters"],
        "gflops": runs[0]["gflops"],
        "minutes": sum(r["wall_time_s"] for r in runs) / 60 / len(runs),
        "runs": len(runs),
    }


def quality(runs_dir: Path, seeds: list[int], schedule: list[str]) -> dict:
    """Every stage for every seed; the ``quality`` section."""
    out = runs_dir / "quality"
    stages = stage_names()
    run_pipeline(out, seeds, stages, schedule)
    results = {stage: stage_results(out, stage, seeds) for stage in stages}
    before = [r["float/test/voc07_map"] for r in results["qteacher"] if "float/test/voc07_map" in r]
    section = {
        "rows": {stage: quality_row(stage, runs) for stage, runs in results.items()},
        "verdict": ordering_verdict(results),
        "runs_dir": str(out),
    }
    if before:
        section["qteacher_before"] = stat(before)
    return section


def _link_teachers(quality_out: Path, out: Path, seeds: list[int]) -> None:
    """Let a width study's students use the quality section's teachers (no retraining)."""
    for seed in seeds:
        for stage in ("teacher", "qteacher"):
            link = out / f"seed{seed}" / stage
            if not link.exists():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to((quality_out / f"seed{seed}" / stage).resolve())


def width_point(method: str, runs: list[dict], source: str) -> dict:
    return {
        "method": method,
        "width": runs[0]["width"],
        "voc07_map": stat([float(r["test/voc07_map"]) for r in runs]),
        "source": source,
    }


def widths(
    runs_dir: Path,
    quality_section: dict,
    quality_seeds: list[int],
    trained: dict[float, list[str]],
    seeds: list[int],
    schedule: list[str],
    not_run: list[dict],
) -> dict:
    """mAP against width for ``scratch`` and ``qmimic``: the 1/16 points and the scratch point
    at the teacher's width come from the quality section (the stage-1 teacher *is* the scratch
    detector at its width, trained on the same schedule); ``trained`` maps each further width
    to the methods trained for it, on ``seeds``."""
    quality_out = Path(quality_section["runs_dir"])
    points = [
        width_point(m, stage_results(quality_out, m, quality_seeds), "quality runs")
        for m in ("scratch", "qmimic")
    ]
    teacher = stage_results(quality_out, "teacher", quality_seeds)
    points.append(width_point("scratch", teacher, "stage-1 teacher runs (same model)"))
    for width, methods in trained.items():
        out = runs_dir / f"width-{width_name(width).replace('/', '-')}"
        _link_teachers(quality_out, out, seeds)
        run_pipeline(out, seeds, methods, [*schedule, f"students:model.width={width}"])
        points += [
            width_point(m, stage_results(out, m, seeds), f"width runs, seeds {seeds}")
            for m in methods
        ]
    return {"points": points, "not_run": not_run}
