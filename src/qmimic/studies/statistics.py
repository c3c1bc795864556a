"""Paired statistics over seeds: the study's differences, intervals and gap closed.

Two stages are compared *paired*: seed k of one against seed k of the other (same data order,
same teacher), so the seed-to-seed spread that both share cancels. The interval is Student's t
interval on the per-seed differences (n - 1 degrees of freedom), which assumes the differences are
roughly normal; with 3 to 10 seeds a bootstrap would understate the spread, so it is not used.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from scipy import stats as scipy_stats

# (minuend, subtrahend) pairs the study reports, in table order.
DIFFERENCES = (
    ("qmimic", "mimic"),
    ("mimic", "scratch"),
    ("qmimic", "scratch"),
    ("quant", "scratch"),
    ("qteacher", "ftteacher"),
    ("ftteacher", "teacher"),
)
# Students whose share of the scratch -> teacher gap is reported.
GAP_STUDENTS = ("quant", "mimic", "qmimic")
# The stages trained before any student: seeds that share a teacher share these runs.
TEACHER_STAGES = ("teacher", "qteacher", "ftteacher")


def paired_difference(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict:
    """Mean of ``a[k] - b[k]`` with a two-sided t interval and the number of seeds ``a`` wins.

    Args:
        a, b: one value per seed, in the same seed order (equal lengths, at least 2).
        confidence: coverage of the interval.

    Returns:
        ``{"values", "mean", "std", "low", "high", "wins", "n", "confidence"}``; ``wins``
        counts the seeds with ``a[k] > b[k]``, ``std`` is the sample standard deviation.

    Raises:
        ValueError: unequal lengths or fewer than two seeds.
    """
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    if len(a) < 2:
        raise ValueError("a paired interval needs at least two seeds")
    values = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    n = len(values)
    mean = statistics.mean(values)
    spread = statistics.stdev(values)
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)) * spread / math.sqrt(n)
    return {
        "values": values,
        "mean": mean,
        "std": spread,
        "low": mean - half,
        "high": mean + half,
        "wins": sum(v > 0 for v in values),
        "n": n,
        "confidence": confidence,
    }


def gap_closed(
    student: Sequence[float], scratch: Sequence[float], teacher: Sequence[float]
) -> dict:
    """The share of the scratch -> teacher gap a student closes.

    ``overall`` is the ratio of means, (mean student - mean scratch) / (mean teacher - mean
    scratch), as the paper's figure is computed from its table; ``per_seed`` is the same ratio
    seed by seed (``None`` where the teacher does not beat scratch).
    """
    gap = statistics.mean(teacher) - statistics.mean(scratch)
    overall = (statistics.mean(student) - statistics.mean(scratch)) / gap if gap > 0 else None
    per_seed = [
        (s - r) / (t - r) if t > r else None
        for s, r, t in zip(student, scratch, teacher, strict=True)
    ]
    return {"overall": overall, "per_seed": per_seed}


def single_difference(a: float, b: float) -> dict:
    """The difference of one pair of runs, in :func:`paired_difference`'s form: one value has
    no spread, so ``std``, ``low`` and ``high`` are ``None``."""
    value = float(a) - float(b)
    return {"values": [value], "mean": value, "std": None, "low": None, "high": None,
            "wins": int(value > 0), "n": 1, "confidence": None}  # fmt: skip


def compare(
    metric: dict[str, list[float]],
    teacher: str = "teacher",
    teacher_runs: Sequence[int] | None = None,
) -> dict:
    """Every paired difference of :data:`DIFFERENCES` and gap of :data:`GAP_STUDENTS` whose
    stages are in ``metric`` (stage -> one value per seed).

    ``teacher_runs``: when seeds share their teacher stages, the positions (in seed order) of
    one seed per distinct teacher. A difference between two :data:`TEACHER_STAGES` is then
    taken over those runs only, each counted once: a shared run repeated over seeds would
    give an interval of zero width. One teacher for all seeds gives that difference without
    an interval (:func:`single_difference`)."""
    differences = {}
    for a, b in DIFFERENCES:
        if a not in metric or b not in metric:
            continue
        first, second = metric[a], metric[b]
        shared = teacher_runs is not None and a in TEACHER_STAGES and b in TEACHER_STAGES
        if shared:
            first, second = [first[i] for i in teacher_runs], [second[i] for i in teacher_runs]
        if len(first) > 1:
            differences[f"{a} - {b}"] = paired_difference(first, second)
        elif shared and len(first) == 1:
            differences[f"{a} - {b}"] = single_difference(first[0], second[0])
    gaps = {
        student: gap_closed(metric[student], metric["scratch"], metric[teacher])
        for student in GAP_STUDENTS
        if student in metric and "scratch" in metric and teacher in metric
    }
    return {"differences": differences, "gap_closed": gaps}
