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
import logging
import sys
from pathlib import Path

from qmimic.conf import options
from qmimic.errors import RESUMABLE, exit_on_user_error
from qmimic.io.results import check_output_folder, write_text
from qmimic.log import get_logger
from qmimic.runs.stage_runs import overrides_for, run_stage
from qmimic.runs.summary import ordering_verdict, write_summary
from qmimic.stages import load_stages
from qmimic.studies.report import evidence_line

log = get_logger("qmimic.pipeline")


@exit_on_user_error(on_interrupt=RESUMABLE)
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
        help="run these stages (default: every stage of the method; controls such as "
        "ftteacher only when named)",
    )
    parser.add_argument("--out", type=Path, default=Path("outputs/pipeline"))
    parser.add_argument(
        "--evidence",
        type=Path,
        default=None,
        help="a study's results.json whose confirmed effects are quoted under the verdict",
    )
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
    check_output_folder(args.out, "--out")
    every = load_stages(args.data)
    stages = [s for s in every if (s.name in args.stages if args.stages else not s.control)]
    results: dict[str, list[dict]] = {s.name: [] for s in stages}
    for seed in args.seeds:
        for stage in stages:
            reaching = overrides_for(stage, every, args.overrides)
            results[stage.name].append(run_stage(stage, seed, args.out, reaching))
    table = write_summary(args.out, results)
    verdict = ordering_verdict(results)
    if verdict and args.evidence:
        verdict = "\n".join(line for line in (verdict, evidence_line(args.evidence)) if line)
    if verdict:
        write_text(args.out / "summary.md", f"{table}\n{verdict}\n")
    log.info("\n%s\n%s\nwritten to %s and summary.json", table, verdict, args.out / "summary.md")


if __name__ == "__main__":
    main()
