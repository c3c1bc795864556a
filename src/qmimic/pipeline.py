"""The whole method, stage after stage: ``python -m qmimic.pipeline [options] [overrides ...]``.

Runs, per seed, the stage-1 teacher, the stage-2 quantized teacher (initialised from it), and the
students at the same width: from scratch, quantized only, mimic (Li et al.) and Quantization
Mimic; each stage is an ordinary ``qmimic.train`` run whose checkpoint feeds the next. Finished
stages are skipped when the command is run again with the same ``--out``, so a crash or Ctrl-C
loses at most the stage in progress. Ends with a table (mean and spread over seeds) written to
``summary.md`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from qmimic.summary import mean_spread, write_summary


@dataclass(frozen=True)
class Stage:
    name: str
    experiment: str
    needs: dict[str, str]  # override key -> name of the stage whose last.ckpt it takes


STAGE_NAMES = ("teacher", "qteacher", "scratch", "quant", "mimic", "qmimic")
STUDENTS = ("scratch", "quant", "mimic", "qmimic")


def overrides_for(stage: str, overrides: list[str]) -> list[str]:
    """The overrides that reach ``stage``: plain ``key=value`` ones reach every stage;
    ``STAGE:key=value`` only that stage, and ``students:key=value`` the four students."""
    chosen = []
    for override in overrides:
        scope, sep, rest = override.partition(":")
        if sep and scope in (*STAGE_NAMES, "students"):
            if scope == stage or (scope == "students" and stage in STUDENTS):
                chosen.append(rest)
        else:
            chosen.append(override)
    return chosen


def stages_for(data: str) -> list[Stage]:
    return [
        Stage("teacher", f"teacher_{data}", {}),
        Stage("qteacher", f"qteacher_{data}", {"init_ckpt": "teacher"}),
        Stage("scratch", f"scratch_{data}", {}),
        Stage("quant", f"quant_{data}", {}),
        Stage("mimic", f"mimic_{data}", {"teacher_ckpt": "teacher"}),
        Stage("qmimic", f"qmimic_{data}", {"teacher_ckpt": "qteacher"}),
    ]


def run_stage(stage: Stage, seed: int, out: Path, overrides: list[str]) -> dict:
    """Run one stage unless its results exist; returns its results.json content."""
    stage_dir = out / f"seed{seed}" / stage.name
    results_path = stage_dir / "results.json"
    if results_path.is_file():
        print(f"[seed {seed}] {stage.name}: done before, skipped", flush=True)
        return json.loads(results_path.read_text())
    inputs = [
        f"{key}={out / f'seed{seed}' / source / 'checkpoints' / 'last.ckpt'}"
        for key, source in stage.needs.items()
    ]
    interrupted = stage_dir / "checkpoints" / "last.ckpt"
    if interrupted.is_file():  # a stage cut short earlier: resume it
        inputs.append(f"ckpt_path={interrupted}")
    command = [
        sys.executable,
        "-m",
        "qmimic.train",
        f"+experiment={stage.experiment}",
        f"seed={seed}",
        f"hydra.run.dir={stage_dir}",
        *inputs,
        *overrides_for(stage.name, overrides),
    ]
    print(f"[seed {seed}] {stage.name}: {' '.join(command[2:])}", flush=True)
    if subprocess.run(command).returncode != 0:
        raise SystemExit(
            f"error: stage {stage.name} (seed {seed}) failed; its log is in "
            f"{stage_dir}. Fix the cause and run the same command again to resume."
        )
    return json.loads(results_path.read_text())


def ordering_verdict(
    results: dict[str, list[dict]],
    order: tuple[str, ...] = ("qmimic", "mimic", "scratch"),
    key: str = "test/voc07_map",
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="shapes", help="experiment suffix (shapes, voc, ...)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--stages",
        nargs="+",
        default=None,
        choices=STAGE_NAMES,
        help="run only these stages (default: all)",
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/pipeline"))
    parser.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides: key=value for every stage, STAGE:key=value for one stage, "
        "students:key=value for the four students",
    )
    argv = sys.argv[1:] if argv is None else argv
    # Overrides may follow a list option (``--stages a b key=value``); argparse would read them as
    # stage names, so they are taken out first.
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    args = parser.parse_args([a for a in argv if a not in overrides])
    args.overrides = overrides
    stages = [s for s in stages_for(args.data) if args.stages is None or s.name in args.stages]
    results: dict[str, list[dict]] = {s.name: [] for s in stages}
    for seed in args.seeds:
        for stage in stages:
            results[stage.name].append(run_stage(stage, seed, args.out, args.overrides))
    table = write_summary(args.out, results)
    verdict = ordering_verdict(results)
    if verdict:
        with (args.out / "summary.md").open("a") as handle:
            handle.write(f"\n{verdict}\n")
    print(f"\n{table}\n{verdict}\nwritten to {args.out / 'summary.md'} and summary.json")


if __name__ == "__main__":
    main()
