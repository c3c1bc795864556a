"""The study: ``python -m qmimic.study --phase tuning|confirmation [options] [overrides ...]``.

Trains every stage of the method and the stage-2 control (``ftteacher``: the float teacher
fine-tuned as long as the quantized one) over a list of seeds, and writes ``<out>/results.json``,
``results.md`` and ``results.png``: per-seed mAP, paired differences over seeds with 95% t
intervals, seeds won, and the share of the scratch -> teacher gap each student closes.

Pre-registration: settings are chosen in the ``tuning`` phase, where ``--sweep`` adds ablation
variants (Hydra sweep syntax, pipeline scopes: ``qmimic:module.mimic_weight=0.5,2``); the
``confirmation`` phase runs the committed defaults only, on seeds the tuning phase never used
(the command refuses overlapping seeds, in either direction). A new confirmation, after the
defaults changed, needs seeds no earlier confirmation used; the earlier one stays in the results
beside it. Finished runs are reused, so the same command resumes a study that was stopped; a
finished run whose settings no longer match is refused rather than reused. The same command with
``--status`` prints how far the runs have got, and trains nothing.
"""

from __future__ import annotations

import argparse
import logging
import sys
from functools import partial
from pathlib import Path

from omegaconf import OmegaConf

from qmimic.conf import load_config, options
from qmimic.errors import RESUMABLE, UserError, exit_on_user_error
from qmimic.io.results import check_output_folder
from qmimic.log import get_logger
from qmimic.runs.stage_runs import overrides_for
from qmimic.stages import load_stages
from qmimic.studies.progress import progress_report
from qmimic.studies.report import (
    load_results,
    phase_block,
    record_confirmation,
    start_new_tuning,
    used_seeds,
    write_study,
)
from qmimic.studies.runner import collect, plan_seed, plan_shared_teachers, run_tasks, variant_out
from qmimic.studies.variants import Variant, expand

log = get_logger("qmimic.study")

# The study's schedule on the built-in data: 3 epochs for the teacher and the students (the
# recipe's 1 epoch for stage 2 and its control). A CPU-budget choice, about 17 min per seed on
# 2 cores. The shapes recipe (the demo) uses the same epochs; they are spelt out here so that
# the study's schedule stays fixed when a recipe changes. Other data train on their recipe's.
SCHEDULES = {"shapes": ["teacher:trainer.max_epochs=3", "students:trainer.max_epochs=3"]}
PHASES = ("tuning", "confirmation")
# Overrides that say where the data lives, not how the study trains: kept out of the report, so
# that a machine's paths do not land in committed results (the runs' configs still hold them).
LOCATION_KEYS = ("data.root=",)


def reported(overrides: list[str]) -> list[str]:
    """``overrides`` without the data's location (:data:`LOCATION_KEYS`)."""
    return [o for o in overrides if not o.lstrip("+~").startswith(LOCATION_KEYS)]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", required=True, choices=PHASES)
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--data", default="shapes", choices=options("recipe"))
    parser.add_argument(
        "--sweep", action="append", default=[], metavar="[SCOPE:]KEY=V1,V2",
        help="tuning only: an ablation swept like a Hydra multirun override; repeat for a "
        "cartesian product. SCOPE: a stage, 'students', or stages joined by commas",
    )  # fmt: skip
    parser.add_argument(
        "--only-variants", action="store_true",
        help="tuning with --sweep: train the swept variants (and the defaults' runs they link "
        "to) but keep the defaults' block already in the results for these seeds",
    )  # fmt: skip
    parser.add_argument(
        "--new-tuning", metavar="REASON",
        help="tuning only: start a fresh tuning section; the one before is kept in the results "
        "as an earlier tuning, with REASON (e.g. what changed in the method's code)",
    )  # fmt: skip
    parser.add_argument(
        "--shared-teacher", action="store_true",
        help="train the teacher stages (teacher, qteacher, ftteacher) once, on the first seed, "
        "and let every seed's students distil from them (pairs stay paired: same teacher, same "
        "data); the report says so. For data whose teacher costs hours",
    )  # fmt: skip
    parser.add_argument(
        "--teacher-block", action="append", default=[], metavar="SEED,SEED,...",
        help="like --shared-teacher, but for one block of the seeds: the block's first seed "
        "trains the teacher stages and the block's other seeds share them; repeat it so that "
        "the blocks cover --seeds (e.g. after the teacher's checkpoints were lost, later seeds "
        "distil from a new teacher). The report names each block",
    )  # fmt: skip
    parser.add_argument(
        "--status", action="store_true",
        help="print how far these seeds' runs have got (finished with their test VOC07 mAP, "
        "the epoch a started one reached, waiting) and stop: trains and writes nothing",
    )  # fmt: skip
    parser.add_argument(
        "--jobs", type=int, default=1,
        help="runs trained side by side (the CPU threads shared out); each starts as soon as "
        "the runs it reads have finished",
    )  # fmt: skip
    parser.add_argument("--runs", type=Path, default=Path("outputs/study"), help="run folders")
    parser.add_argument("--out", type=Path, default=Path("study"), help="results folder")
    parser.add_argument(
        "overrides", nargs="*",
        help="extra pipeline overrides for every variant (replace the study schedule's keys)",
    )  # fmt: skip
    # Overrides may follow a list option (``--seeds 0 1 key=value``); argparse would read them as
    # seeds, so they are taken out first, except the values of --sweep (which hold "=" too).
    overrides = [a for a in argv if "=" in a and not a.startswith("-")]
    args = parser.parse_args(_rejoin_sweeps(argv, overrides))
    args.overrides = [o for o in overrides if o not in args.sweep]
    return args


def _rejoin_sweeps(argv: list[str], overrides: list[str]) -> list[str]:
    """``argv`` without the positional overrides, keeping the values of ``--sweep``."""
    kept, follows_sweep = [], False
    for arg in argv:
        if follows_sweep or arg.startswith("--sweep=") or arg not in overrides:
            kept.append(arg)
        follows_sweep = arg == "--sweep"
    return kept


def teacher_seeds(args: argparse.Namespace) -> dict[int, int]:
    """seed -> the seed whose teacher stages it uses, for the seeds that share a teacher
    (``--shared-teacher``: all, ``--teacher-block``: each block); empty when every seed trains its
    own.

    Raises:
        UserError: both options, a block that is not a list of seeds, or blocks that do not
            cover ``--seeds`` exactly once.
    """
    if args.shared_teacher and args.teacher_block:
        raise UserError("use --shared-teacher (one teacher for all seeds) or --teacher-block "
                        "(one per block), not both")  # fmt: skip
    if args.shared_teacher:
        return {seed: args.seeds[0] for seed in args.seeds}
    teacher_of: dict[int, int] = {}
    for block in args.teacher_block:
        try:
            seeds = [int(seed) for seed in block.split(",")]
        except ValueError:
            raise UserError(
                f"--teacher-block {block!r}: write the block's seeds joined by commas, e.g. "
                "--teacher-block 1,2"
            ) from None
        for seed in seeds:
            if seed in teacher_of:
                raise UserError(f"--teacher-block: seed {seed} is in two blocks")
            teacher_of[seed] = seeds[0]
    if teacher_of and sorted(teacher_of) != sorted(args.seeds):
        raise UserError(
            f"--teacher-block blocks cover seeds {sorted(teacher_of)} but --seeds are "
            f"{sorted(args.seeds)}: every seed must be in exactly one block"
        )
    return teacher_of


def check_seeds(results: dict, phase: str, seeds: list[int]) -> None:
    """Refuse seeds the other phase has used (tuning seeds must never be confirmation seeds),
    and, for a new confirmation, seeds an earlier confirmation used."""
    other = "confirmation" if phase == "tuning" else "tuning"
    overlap = sorted(set(seeds) & used_seeds(results, other))
    if overlap:
        raise UserError(
            f"seeds {overlap} were used in the {other} phase of this study; the {phase} phase "
            f"needs other seeds (tuning and confirmation seeds never overlap)"
        )
    current = (results.get("confirmation") or {}).get("seeds")
    if phase == "confirmation" and seeds != current:
        seen = sorted(set(seeds) & used_seeds(results, "confirmation"))
        if seen:
            raise UserError(
                f"seeds {seen} were used by an earlier confirmation (seeds {current}); a new "
                "confirmation needs seeds no confirmation has seen, or pass exactly "
                f"--seeds {' '.join(map(str, current or []))} to collect that one again"
            )


def check_only_variants(args: argparse.Namespace, results: dict) -> None:
    """``--only-variants`` needs a sweep and a defaults block of the same seeds to keep."""
    if not args.only_variants:
        return
    defaults = (results.get("tuning") or {}).get("variants", {}).get("defaults") or {}
    if args.phase != "tuning" or not args.sweep or defaults.get("seeds") != args.seeds:
        raise UserError(
            "--only-variants keeps the defaults' tuning block of the same seeds: use it in the "
            f"tuning phase with --sweep, after a tuning run of the defaults on --seeds "
            f"{' '.join(map(str, args.seeds))} (found: {defaults.get('seeds') or 'none'})"
        )


def composed_recipe(stages: list, overrides: list[str]) -> dict:
    """The ``recipe`` node the qmimic stage composes with ``overrides`` (what the defaults of
    this study were, recorded beside its numbers)."""
    qmimic = next(s for s in stages if s.name == "qmimic")
    reaching = overrides_for(qmimic, stages, overrides)
    cfg = load_config("train", [f"+experiment={qmimic.experiment}", *reaching])
    return OmegaConf.to_container(cfg.recipe, resolve=True)


def preamble(data: str, schedule: list[str]) -> str:
    described = "Built-in `shapes` data" if data == "shapes" else f"Data `{data}`"
    trained = f"schedule `{' '.join(schedule)}`" if schedule else "the recipe's schedule"
    return (
        f"{described} (recipe/{data}.yaml), width-1/16 students, {trained} "
        "(stage 2 and its control `ftteacher`: the recipe's fine-tuning). Values are VOC07 "
        "mAP@0.5 in points unless marked. Intervals: Student's t over the per-seed paired "
        "differences (n - 1 degrees of freedom). Gap closed: (mean student - mean scratch) / "
        "(mean teacher - mean scratch), the stage-1 teacher. Written by `python -m qmimic.study`; "
        "every value is in results.json."
    )


@exit_on_user_error(on_interrupt=RESUMABLE)
def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout, force=True)
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.status:
        stages = load_stages(args.data)
        variants = [Variant(), *expand(args.sweep, stages)]
        print(progress_report(args.runs, args.phase, variants, args.seeds, stages,
                              teacher_seeds(args)))  # fmt: skip
        return
    if args.jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {args.jobs}")
    if args.phase == "confirmation" and args.sweep:
        raise UserError(
            "the confirmation phase runs the committed defaults only; put the chosen settings "
            "into the *_shapes experiments and run it without --sweep"
        )
    if len(set(args.seeds)) < 2:
        raise UserError("the study needs at least two seeds for paired intervals")
    check_output_folder(args.runs, "--runs")
    check_output_folder(args.out, "--out")
    stages = load_stages(args.data)
    variants = [Variant(), *expand(args.sweep, stages)]
    results = load_results(args.out / "results.json")
    if args.new_tuning is not None:
        if args.phase != "tuning" or args.only_variants:
            raise UserError("--new-tuning starts a tuning phase: use it with --phase tuning, "
                            "without --only-variants")  # fmt: skip
        results = start_new_tuning(results, args.new_tuning)
    check_seeds(results, args.phase, args.seeds)
    check_only_variants(args, results)
    schedule = [*SCHEDULES.get(args.data, []), *args.overrides]
    teacher_of = teacher_seeds(args)
    plan = partial(
        plan_seed, variants=variants, runs=args.runs, phase=args.phase, schedule=schedule,
        all_defaults=not args.only_variants,
    )  # fmt: skip
    tasks = []  # the shared teachers first: every distilling student waits for them
    for first in sorted(set(teacher_of.values()), key=args.seeds.index):
        tasks += plan_shared_teachers(first, partial(plan, shared_from=first), stages)
    for seed in args.seeds:
        tasks += plan(seed, stages=stages, shared_from=teacher_of.get(seed))
    run_tasks(tasks, args.jobs)
    blocks = {
        v.name: phase_block(
            collect(variant_out(args.runs, args.phase, v), args.seeds, stages),
            args.seeds,
            reported([*schedule, *v.overrides]),
            composed_recipe(stages, [*schedule, *v.overrides]),
            teacher_of=teacher_of,
        )
        for v in variants
        if v.overrides or not args.only_variants
    }
    results = load_results(args.out / "results.json")  # again: another phase may have written
    if args.new_tuning is not None:
        results = start_new_tuning(results, args.new_tuning)
    if args.phase == "tuning":
        section = results.setdefault("tuning", {"variants": {}})
        section["variants"].update(blocks)
    else:
        record_confirmation(results, blocks["defaults"])
    for path in write_study(args.out, results, preamble(args.data, reported(schedule))):
        log.info("written %s", path)


if __name__ == "__main__":
    main()
