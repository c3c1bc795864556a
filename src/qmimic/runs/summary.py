"""Tables over several runs' ``results.json``: mean and spread per group (stage, sweep point).

Used by the pipeline (one group per stage, one run per seed) and by Hydra sweeps (one group per
combination of swept values, seeds pooled).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from qmimic.io.environment import distinct_environments
from qmimic.io.results import write_json, write_text
from qmimic.metrics.names import (
    MAP,
    MAP_50,
    TEST,
    VOC07_MAP,
    WIDER_EASY,
    WIDER_HARD,
    WIDER_MEDIUM,
)
from qmimic.metrics.names import key as metric_key

# results.json key -> column title, in table order; a column appears when some run has the key.
METRIC_COLUMNS = {
    metric_key(TEST, VOC07_MAP): "VOC07 mAP@0.5",
    metric_key(TEST, WIDER_EASY): "WIDER easy AP",
    metric_key(TEST, WIDER_MEDIUM): "WIDER medium AP",
    metric_key(TEST, WIDER_HARD): "WIDER hard AP",
    metric_key(TEST, MAP): "COCO mAP",
    metric_key(TEST, MAP_50): "COCO mAP@0.5",
}


def mean_spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.mean(values), spread


def stat(values: list[float]) -> dict:
    """``{"values", "mean", "std"}`` of ``values`` (sample std, 0 for a single value)."""
    mean, spread = mean_spread(values)
    return {"values": values, "mean": mean, "std": spread}


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A markdown table of ``rows`` (cells already formatted) under ``header``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def points(summary: dict | None) -> str:
    """A :func:`stat` as a table cell in points (fractions x 100): ``mean ± std`` over several
    values, the value alone for one, ``-`` for none."""
    if not summary or not summary.get("values"):
        return "-"
    if len(summary["values"]) > 1:
        return f"{100 * summary['mean']:.1f} ± {100 * summary['std']:.1f}"
    return f"{100 * summary['mean']:.1f}"


def summarize(groups: dict[str, list[dict]], label: str = "model") -> tuple[str, dict]:
    """A markdown table (metrics in points, mean ± standard deviation over each group's runs)
    and its JSON form: per group the values, mean and std of every metric (as fractions), the
    model's parameters and GFLOPs, mean minutes, the number of runs, and the distinct
    ``environment`` records of its runs (:func:`~qmimic.io.environment.distinct_environments`)."""
    keys = [k for k in METRIC_COLUMNS if any(k in r for runs in groups.values() for r in runs)]
    titles = [label, *(METRIC_COLUMNS[k] for k in keys), "parameters", "GFLOPs", "minutes", "runs"]
    rows, summary = [], {}
    for name, runs in groups.items():
        values = {k: [float(r[k]) for r in runs if k in r] for k in keys}
        times = [r["wall_time_s"] / 60 for r in runs if "wall_time_s" in r]
        facts = {
            "parameters": runs[0].get("parameters"),
            "gflops": runs[0].get("gflops"),
            "minutes": statistics.mean(times) if times else None,
            "runs": len(runs),
        }
        cells = [points(stat(values[k]) if values[k] else None) for k in keys]
        cells.append("-" if facts["parameters"] is None else f"{facts['parameters']:,}")
        cells.append("-" if facts["gflops"] is None else f"{facts['gflops']:.3f}")
        cells.append("-" if facts["minutes"] is None else f"{facts['minutes']:.1f}")
        cells.append(str(len(runs)))
        rows.append([name, *cells])
        summary[name] = {
            **facts,
            "metrics": {k: stat(v) for k, v in values.items() if v},
            "output_dirs": [r.get("output_dir") for r in runs],
            "environments": distinct_environments(runs),
        }
    return markdown_table(titles, rows), summary


def write_summary(folder: Path, groups: dict[str, list[dict]], label: str = "model") -> str:
    """Write ``summary.md`` and ``summary.json`` into ``folder``; returns the markdown table."""
    table, summary = summarize(groups, label)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "summary.md", table)
    write_json(folder / "summary.json", summary)
    return table


def ordering_verdict(
    results: dict[str, list[dict]],
    order: tuple[str, ...] = ("qmimic", "mimic", "scratch"),
    key: str = metric_key(TEST, VOC07_MAP),
) -> str:
    """Whether the paper's ordering of the students holds on the mean of ``key`` ("" when a
    stage or the metric is missing)."""
    means = []
    for name in order:
        values = [r[key] for r in results.get(name, []) if key in r]
        if not values:
            return ""
        means.append(mean_spread(values)[0])
    holds = all(a > b for a, b in zip(means[:-1], means[1:], strict=True))
    shown = " / ".join(f"{name} {100 * m:.1f}" for name, m in zip(order, means, strict=True))
    return (
        f"Paper's ordering {' > '.join(order)} on mean {key}: "
        f"{'holds' if holds else 'does NOT hold'} ({shown})"
    )
