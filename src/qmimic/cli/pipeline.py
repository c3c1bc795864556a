"""The whole method, stage after stage: ``python -m qmimic.pipeline [options] [overrides ...]``.

Runs, per seed, the stage-1 teacher, the stage-2 quantized teacher (initialised from it), and the
students at the same width: from scratch, quantized only, mimic (Li et al.) and Quantization
Mimic; each stage is an ordinary ``qmimic.train`` run whose checkpoint feeds the next. The stages,
their order and what each needs come from the ``stage`` config group (:mod:`qmimic.stages`), the
data's widths and schedules from ``recipe/<data>.yaml``. Finished
stages are skipped when the command is run again with the same ``--out``, so a crash or Ctrl-C
loses at most the stage in progress. Ends with a table (mean and spread over seeds) written to
``summary.md`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

from qmimic.conf import options
from qmimic.errors import exit_on_user_error
from qmimic.runs.log import get_logger
from qmimic.runs.results import write_text
from qmimic.runs.summary import ordering_verdict, write_summary
from qmimic.stages import Stage, load_stages

log = get_logger("qmimic.pipeline")


def overrides_for(stage: Stage, stages: list[Stage], overrides: list[str]) -> list[str]:
    """The overrides that reach ``stage``: plain ``key=value`` ones reach every stage;
    ``STAGE:key=value`` only that stage, and ``students:key=value`` every student stage."""
    scopes = {s.name for s in stages} | {"students"}
    chosen = []
    for override in overrides:
        scope, sep, rest = override.partition(":")
        if sep and scope in scopes:
            if scope == stage.name or (scope == "students" and stage.student):
                chosen.append(rest)
        else:
            chosen.append(override)
    return chosen


def run_stage(stage: Stage, seed: int, out: Path, overrides: list[str]) -> dict:
    """Run one stage unless its results exist; returns its results.json content.

    ``overrides`` are those that reach this stage (see :func:`overrides_for`).
    """
    stage_dir = out / f"seed{seed}" / stage.name
    results_path = stage_dir / "results.json"
    if results_path.is_file():
        log.info("[seed %d] %s: done before, skipped", seed, stage.name)
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
        *overrides,
    ]
    log.info("[seed %d] %s: %s", seed, stage.name, " ".join(command[2:]))
    if subprocess.run(command).returncode != 0:
        raise SystemExit(
            f"error: stage {stage.name} (seed {seed}) failed; its log is in "
            f"{stage_dir}. Fix the cause and run the same command again to resume."
        )
    return json.loads(results_path.read_text())


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout, force=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", default="shapes", choices=options("recipe"), help="the recipe (data) to run"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--stages",
        nargs="+",
        default=None,
        choices=options("stage"),
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
    every = load_stages(args.data)
    stages = [s for s in every if args.stages is None or s.name in args.stages]
    results: dict[str, list[dict]] = {s.name: [] for s in stages}
    for seed in args.seeds:
        for stage in stages:
            reaching = overrides_for(stage, every, args.overrides)
            results[stage.name].append(run_stage(stage, seed, args.out, reaching))
    table = write_summary(args.out, results)
    verdict = ordering_verdict(results)
    if verdict:
        write_text(args.out / "summary.md", f"{table}\n{verdict}\n")
    log.info("\n%s\n%s\nwritten to %s and summary.json", table, verdict, args.out / "summary.md")


if __name__ == "__main__":
    main()
