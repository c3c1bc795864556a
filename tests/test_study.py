"""The study: paired statistics on hand-computed cases, variants, resuming, pre-registration."""

from __future__ import annotations

import json
import math
import os
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from qmimic.cli.study import main as study_main
from qmimic.errors import StageFailedError
from qmimic.stages import load_stages
from qmimic.studies.report import (
    evidence_line,
    phase_block,
    start_new_tuning,
    used_seeds,
    write_study,
)
from qmimic.studies.runner import collect, plan_seed, plan_shared_teachers, run_tasks, variant_out
from qmimic.studies.statistics import gap_closed, paired_difference
from qmimic.studies.variants import Variant, expand, reused_stages


def test_the_paired_t_interval_matches_a_hand_computed_case():
    # differences 0.1, 0.2, 0.1: mean 0.1333, sd 0.05774, t(0.975, 2) = 4.3027
    d = paired_difference([0.5, 0.6, 0.7], [0.4, 0.4, 0.6])
    half = 4.302653 * 0.0577350 / math.sqrt(3)
    assert d["mean"] == pytest.approx(0.1333333, abs=1e-6)
    assert d["std"] == pytest.approx(0.0577350, abs=1e-6)
    assert (d["low"], d["high"]) == pytest.approx((0.1333333 - half, 0.1333333 + half), abs=1e-5)
    assert (d["wins"], d["n"]) == (3, 3)


def test_the_interval_narrows_with_more_seeds_of_the_same_spread():
    three = paired_difference([1, 2, 3], [0, 2, 2])  # differences 1, 0, 1
    six = paired_difference([1, 2, 3] * 2, [0, 2, 2] * 2)
    assert three["mean"] == pytest.approx(six["mean"])
    assert six["high"] - six["low"] < (three["high"] - three["low"]) / 2
    assert six["wins"] == 4


def test_paired_values_must_match_seed_for_seed():
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="at least two"):
        paired_difference([0.1], [0.2])


def test_the_gap_closed_is_a_ratio_of_means():
    gap = gap_closed(student=[0.3, 0.5], scratch=[0.2, 0.2], teacher=[0.4, 0.6])
    # means: student 0.4, scratch 0.2, teacher 0.5 -> 0.2 / 0.3
    assert gap["overall"] == pytest.approx(2 / 3)
    assert gap["per_seed"] == pytest.approx([0.5, 0.75])
    assert gap_closed([0.3], [0.4], [0.4])["overall"] is None  # no gap to close


def test_a_sweep_expands_like_hydra_multirun_and_keeps_its_scope():
    stages = load_stages("shapes")
    variants = expand(
        ["qteacher,qmimic:quant.quantizer.calibration_levels=4,8", "mimic_weight_free=range(1,3)"],
        stages,
    )
    assert [v.overrides for v in variants] == [
        ("qteacher,qmimic:quant.quantizer.calibration_levels=4", "mimic_weight_free=1"),
        ("qteacher,qmimic:quant.quantizer.calibration_levels=4", "mimic_weight_free=2"),
        ("qteacher,qmimic:quant.quantizer.calibration_levels=8", "mimic_weight_free=1"),
        ("qteacher,qmimic:quant.quantizer.calibration_levels=8", "mimic_weight_free=2"),
    ]
    assert "/" not in variants[0].folder and ":" not in variants[0].folder


def test_a_variant_reuses_what_its_overrides_do_not_reach():
    stages = load_stages("shapes")
    students_only = Variant(("qmimic:module.mimic_weight=2",))
    assert reused_stages(students_only, stages) == {
        "teacher", "qteacher", "ftteacher", "scratch", "quant", "mimic",
    }  # fmt: skip
    # a new quantized teacher means a new qmimic student, even though no override reaches it
    teacher_side = Variant(("qteacher:quant.quantizer.calibration_levels=4",))
    reused = reused_stages(teacher_side, stages)
    assert "qteacher" not in reused and "qmimic" not in reused
    assert {"teacher", "ftteacher", "scratch", "mimic"} <= reused


def fake_runner(calls: list):
    """Writes a results.json like a finished run, unless one exists (as run_stage skips)."""

    def run(stage, seed, out, overrides, env=None, quiet=False):
        results = out / f"seed{seed}" / stage.name / "results.json"
        if results.is_file():
            return json.loads(results.read_text())
        calls.append((out.name, seed, stage.name, tuple(overrides)))
        results.parent.mkdir(parents=True, exist_ok=True)
        value = 0.1 * stage.order + 0.01 * seed
        results.write_text(json.dumps({"test/voc07_map": value, "test/map": value / 2}))
        return json.loads(results.read_text())

    return run


def test_the_study_resumes_without_retraining_and_links_reused_runs(tmp_path: Path):
    stages = load_stages("shapes")
    variant = Variant(("qmimic:module.mimic_weight=2",))
    calls: list = []
    for _ in range(2):  # the second pass finds everything done
        run_tasks(
            plan_seed(0, [variant], stages, tmp_path, "tuning", ["students:trainer.max_epochs=3"]),
            runner=fake_runner(calls),
        )  # fmt: skip
    # the runs that read a teacher stage's checkpoint first, then the students that read none
    readers = [s.name for s in stages if s.needs]
    free = [s.name for s in stages if not s.needs]
    assert [c[2] for c in calls] == ["teacher", *readers, "qmimic", *free[1:]]
    assert free[0] == "teacher" and set(free[1:]) == {"scratch", "quant"}
    trained_for_variant = [c for c in calls if c[0] != "defaults"]
    assert trained_for_variant == [
        (variant.folder, 0, "qmimic", ("trainer.max_epochs=3", "module.mimic_weight=2"))
    ]
    linked = variant_out(tmp_path, "tuning", variant) / "seed0" / "teacher"
    assert linked.is_symlink()
    assert linked.resolve() == (tmp_path / "tuning" / "defaults" / "seed0" / "teacher").resolve()


def synthetic_results(seeds: list[int]) -> dict[str, list[dict]]:
    offsets = {"teacher": 0.40, "qteacher": 0.42, "ftteacher": 0.415, "scratch": 0.20,
               "quant": 0.21, "mimic": 0.25, "qmimic": 0.30}  # fmt: skip
    return {
        stage: [
            {"test/voc07_map": base + 0.01 * (i % 2), "test/map": base / 2}
            for i, _ in enumerate(seeds)
        ]
        for stage, base in offsets.items()
    }


def test_the_study_files_hold_every_value_and_the_verdicts(tmp_path: Path):
    seeds = [10, 11, 12, 13, 14]
    block = phase_block(synthetic_results(seeds), seeds, ["students:trainer.max_epochs=3"])
    written = write_study(tmp_path, {"confirmation": block}, "preamble")
    saved = json.loads((tmp_path / "results.json").read_text())["confirmation"]
    assert saved["seeds"] == seeds
    assert set(saved["voc07_map"]) >= {"teacher", "qteacher", "scratch", "quant", "mimic", "qmimic"}
    assert all(len(v) == 5 and all(0 <= x <= 1 for x in v) for v in saved["voc07_map"].values())
    d = saved["comparisons"]["differences"]["qmimic - mimic"]
    assert d["mean"] == pytest.approx(0.05) and d["wins"] == 5
    gap = saved["comparisons"]["gap_closed"]["qmimic"]["overall"]
    assert gap == pytest.approx(0.5)
    text = (tmp_path / "results.md").read_text()
    assert "qmimic - mimic > 0 with the 95% interval above zero: met (+5.0" in text
    assert "qmimic closes >= 35% of the gap: met (50.0%)" in text
    assert "within 1 point of the equally fine-tuned float teacher: met (+0.5)" in text
    assert tmp_path / "results.md" in written
    line = evidence_line(tmp_path / "results.json")
    assert "confirmation seeds 10, 11, 12, 13, 14, not this run" in line
    assert "qmimic - mimic +5.0 points, 95% CI [" in line and "won 5/5" in line
    assert evidence_line(tmp_path / "missing.json") == ""


def test_a_block_records_the_environments_its_runs_were_trained_in(tmp_path: Path):
    seeds = [0, 1]
    here = {"torch": "2.14.1", "processor": "CPU A", "cpu_capability": "AVX2", "threads": 1,
            "cuda_device": None}  # fmt: skip
    results = synthetic_results(seeds)
    for runs in results.values():
        for i, run in enumerate(runs):
            run["environment"] = here if i == 0 else {**here, "processor": "CPU B"}
    block = phase_block(results, seeds, [])
    assert [e["processor"] for e in block["environments"]] == ["CPU A", "CPU B"]
    write_study(tmp_path, {"confirmation": block}, "preamble")
    text = (tmp_path / "results.md").read_text()
    assert "Trained with: torch 2.14.1, CPU A (AVX2), 1 threads; torch 2.14.1, CPU B" in text
    assert "environments" not in phase_block(synthetic_results(seeds), seeds, [])


def test_training_cost_counts_each_run_once(tmp_path: Path):
    seeds = [0, 1]
    results = synthetic_results(seeds)
    for stage, runs in results.items():
        for i, run in enumerate(runs):
            run["wall_time_s"] = 1800.0 if stage != "teacher" else 3600.0
            run["environment"] = {
                "torch": "2.14.1",
                "processor": "CPU A",
                "cuda_device": None,
                "cpu_capability": "AVX2",
                "threads": 2 if stage == "teacher" else 1,
            }
            run["seed"] = i
    results["teacher"] = [results["teacher"][0]] * 2  # shared by both seeds: one run
    block = phase_block(results, seeds, [], teacher_of={0: 0, 1: 0})
    # 1 teacher run (1 h, 2 threads) + 6 other stages x 2 seeds (0.5 h, 1 thread each)
    assert block["training_cost"] == {"runs": 13, "wall_hours": 7.0, "thread_hours": 8.0}
    write_study(tmp_path, {"confirmation": block}, "preamble")
    text = (tmp_path / "results.md").read_text()
    assert "Training time of its 13 runs (each counted once): 7.0 hours of wall time, 8.0" in text
    assert "training_cost" not in phase_block(synthetic_results(seeds), seeds, [])


def test_confirmation_refuses_tuning_seeds_and_sweeps(tmp_path: Path, capsys):
    seeds = [0, 1, 2]
    block = phase_block(synthetic_results(seeds), seeds, [])
    write_study(tmp_path, {"tuning": {"variants": {"defaults": block}}}, "")
    before = (tmp_path / "results.json").read_bytes()
    argv = ["--phase", "confirmation", "--out", str(tmp_path), "--runs", str(tmp_path / "runs")]
    with pytest.raises(SystemExit) as exit_info:
        study_main([*argv, "--seeds", "2", "10"])
    assert exit_info.value.code == 2
    assert "seeds [2] were used in the tuning phase" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        study_main([*argv, "--seeds", "10", "11", "--sweep", "qmimic:module.mimic_weight=2,4"])
    assert "runs the committed defaults only" in capsys.readouterr().err
    assert (tmp_path / "results.json").read_bytes() == before
    assert not (tmp_path / "runs").exists()


def test_selection_rule_picks_the_highest_qmimic_gain_and_keeps_defaults_on_a_tie():
    from qmimic.studies.report import selected_variant

    def block(gain: float) -> dict:
        return {"comparisons": {"differences": {"qmimic - scratch": {"mean": gain}}}}

    variants = {"defaults": block(0.01), "a": block(0.05), "b": block(0.03)}
    assert selected_variant(variants) == ("a", 0.05)
    assert selected_variant({"x": block(0.02), "defaults": block(0.02)}) == ("defaults", 0.02)


def test_selection_line_says_whether_a_confirmation_backs_the_pick():
    from qmimic.studies.report import selection_line

    variants = {"defaults": {"comparisons": {"differences": {"qmimic - scratch": {"mean": 0.01}}}}}
    assert "the confirmation runs the defaults" in selection_line(variants, confirmed=True)
    unconfirmed = selection_line(variants, confirmed=False)
    assert "no confirmation is recorded here" in unconfirmed and "`defaults`" in unconfirmed


def test_a_new_confirmation_keeps_the_one_before_and_needs_fresh_seeds(tmp_path: Path, capsys):
    from qmimic.studies.report import record_confirmation

    first = phase_block(synthetic_results([10, 11]), [10, 11], [], {"student": {"regions": "s"}})
    results = record_confirmation({}, first)
    assert record_confirmation(dict(results), first) == {"confirmation": first}  # re-collected
    second = phase_block(synthetic_results([15, 16]), [15, 16], [], {"student": {"regions": "t"}})
    results = record_confirmation(results, second)
    assert results["confirmation"]["seeds"] == [15, 16]
    assert [b["seeds"] for b in results["earlier_confirmations"]] == [[10, 11]]
    write_study(tmp_path, results, "preamble")
    text = (tmp_path / "results.md").read_text()
    assert text.index("## Confirmation") < text.index("## Earlier confirmations")
    assert (
        "### Defaults then (seeds 10, 11)" in text
        and "Recipe (the overrides above take precedence): `student.regions=s`." in text
    )

    before = (tmp_path / "results.json").read_bytes()
    argv = ["--phase", "confirmation", "--out", str(tmp_path), "--runs", str(tmp_path / "runs")]
    for seeds in (["11", "20"], ["15", "21"]):  # an earlier confirmation's seed; the current one's
        with pytest.raises(SystemExit) as exit_info:
            study_main([*argv, "--seeds", *seeds])
        assert exit_info.value.code == 2
        assert "a new confirmation needs seeds no confirmation has seen" in capsys.readouterr().err
    assert (tmp_path / "results.json").read_bytes() == before
    assert not (tmp_path / "runs").exists()


def test_only_variants_trains_just_the_defaults_runs_a_variant_links_to(tmp_path: Path):
    stages = load_stages("shapes")
    teacher_side = Variant(("teacher:trainer.max_epochs=6",))
    students_only = Variant(("qmimic:module.mimic_weight=2",))
    calls: list = []
    for variant in (teacher_side, students_only):
        run_tasks(
            plan_seed(0, [variant], stages, tmp_path, "tuning", [], all_defaults=False),
            runner=fake_runner(calls),
        )  # fmt: skip
    trained = [(folder, stage) for folder, _, stage, _ in calls]
    own_teacher = ["teacher", "qteacher", "ftteacher", "mimic", "qmimic"]
    assert trained == [
        ("defaults", "scratch"),  # a new teacher still shares the students trained without one
        ("defaults", "quant"),
        *((teacher_side.folder, s) for s in own_teacher),
        *(("defaults", s) for s in ["teacher", "qteacher", "ftteacher", "mimic"]),
        (students_only.folder, "qmimic"),
    ]


def test_only_variants_needs_a_sweep_and_the_defaults_block_of_the_same_seeds(
    tmp_path: Path, capsys
):
    write_study(
        tmp_path, {"tuning": {"variants": {"defaults": phase_block(synthetic_results([0, 1]),
                                                                  [0, 1], [])}}}, ""
    )  # fmt: skip
    argv = ["--phase", "tuning", "--out", str(tmp_path), "--runs", str(tmp_path / "runs")]
    for extra in (["--seeds", "0", "1"], ["--seeds", "0", "2", "--sweep", "teacher:seed=1,2"]):
        with pytest.raises(SystemExit):
            study_main([*argv, "--only-variants", *extra])
        assert "--only-variants keeps the defaults' tuning block" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_block_holds_the_match_rates_of_the_distilled_students(tmp_path: Path):
    seeds = [0, 1, 2]
    results = synthetic_results(seeds)
    for stage, match in (("mimic", 0.5), ("qmimic", 0.6)):
        for i, run in enumerate(results[stage]):
            run |= {"val/mimic_match": match + 0.01 * i, "val/mimic_distance": 1.0 - match}
    block = phase_block(results, seeds, [])
    assert block["mimic_match"] == {"mimic": [0.5, 0.51, 0.52], "qmimic": [0.6, 0.61, 0.62]}
    assert block["mimic_distance"]["qmimic"] == pytest.approx([0.4] * 3)
    write_study(tmp_path, {"confirmation": block}, "")
    text = (tmp_path / "results.md").read_text()
    assert "| qmimic | match % | 60.0 | 61.0 | 62.0 | 61.0 |" in text
    assert "mimic_match" not in phase_block(synthetic_results(seeds), seeds, [])  # none logged


def test_a_new_tuning_keeps_the_one_before_on_record(tmp_path: Path):
    block = phase_block(synthetic_results([0, 1]), [0, 1], [])
    confirmed = phase_block(synthetic_results([10, 11]), [10, 11], [])
    before = {"tuning": {"variants": {"defaults": block}}, "confirmation": confirmed}
    results = start_new_tuning(before, "the loss changed")
    assert results["tuning"] == {"variants": {}} and "confirmation" not in results
    assert results["earlier_confirmations"][-1]["seeds"] == [10, 11]
    assert evidence_line(write_study(tmp_path, results, "")[0]) == ""  # nothing quoted now
    (earlier,) = results["earlier_tunings"]
    assert earlier["superseded"] == "the loss changed" and earlier["variants"]["defaults"] == block
    assert used_seeds(results, "tuning") == {0, 1}  # still barred from any confirmation
    results["tuning"]["variants"]["defaults"] = block
    write_study(tmp_path, results, "")
    text = (tmp_path / "results.md").read_text()
    assert "## Earlier tuning (superseded)" in text and "Why: the loss changed" in text
    assert "Superseded: the loss changed" in text


def test_a_shared_teacher_is_trained_once_and_linked_for_every_other_seed(tmp_path: Path):
    stages = load_stages("voc_cpu")
    calls: list = []
    plan = partial(plan_seed, variants=[Variant()], runs=tmp_path, phase="confirmation",
                   schedule=[], shared_from=20)  # fmt: skip
    run_tasks(plan_shared_teachers(20, plan, stages), runner=fake_runner(calls))
    assert [(c[1], c[2]) for c in calls] == [(20, "teacher"), (20, "qteacher"),
                                             (20, "ftteacher")]  # fmt: skip
    for seed in (20, 21, 22):
        run_tasks(plan(seed, stages=stages), runner=fake_runner(calls))
    students = {s.name for s in stages if s.student}
    trained = [(seed, stage) for _, seed, stage, _ in calls]
    assert sorted(trained) == sorted(
        [(20, "teacher"), (20, "qteacher"), (20, "ftteacher")]
        + [(seed, name) for seed in (20, 21, 22) for name in students]
    )
    out = variant_out(tmp_path, "confirmation", Variant())
    linked = out / "seed22" / "qteacher"
    assert linked.is_symlink() and linked.resolve() == (out / "seed20" / "qteacher").resolve()
    results = collect(out, [20, 21, 22], stages)
    block = phase_block(results, [20, 21, 22], [], teacher_of=dict.fromkeys([20, 21, 22], 20))
    assert block["voc07_map"]["teacher"] == [block["voc07_map"]["teacher"][0]] * 3
    # the teacher stages are one run each: their difference is that run's, with no interval
    control = block["comparisons"]["differences"]["qteacher - ftteacher"]
    assert control["n"] == 1 and control["low"] is None and control["high"] is None
    assert block["comparisons"]["differences"]["qmimic - mimic"]["n"] == 3  # students: per seed
    write_study(tmp_path, {"confirmation": block}, "")
    text = (tmp_path / "results.md").read_text()
    assert "One teacher for all seeds" in text
    row = next(line for line in text.splitlines() if line.startswith("| qteacher - ftteacher |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2] == "none (one run each)" and cells[3] in ("0/1", "1/1")
    assert (tmp_path / "results.png").is_file()


def test_a_block_holds_per_class_ap_and_learning_curves(tmp_path: Path):
    seeds = [20, 21]
    results = synthetic_results(seeds)
    for stage, runs in results.items():
        for i, run in enumerate(runs):
            folder = tmp_path / "runs" / stage / str(i) / "csv"
            folder.mkdir(parents=True)
            rows = ["epoch,step,val/voc07_map,train/loss"]
            for epoch in range(3):
                value = 0.1 * (epoch + 1) + 0.02 * i
                rows += [f"{epoch},{epoch * 10},{value},", f"{epoch},{epoch * 10 + 5},,1.0"]
            (folder / "metrics.csv").write_text("\n".join(rows) + "\n")
            run["output_dir"] = str(folder.parent)
            run["test/per_class_ap"] = {"dog": 0.5 + 0.1 * i, "cat": 0.2}
    block = phase_block(results, seeds, [])
    assert block["per_class_ap"]["qmimic"] == {"dog": [0.5, 0.6], "cat": [0.2, 0.2]}
    assert block["curves"]["teacher"] == [[0, pytest.approx(0.11)], [1, pytest.approx(0.21)],
                                          [2, pytest.approx(0.31)]]  # fmt: skip
    written = write_study(tmp_path, {"confirmation": block}, "")
    assert tmp_path / "per_class_ap.md" in written
    table = (tmp_path / "per_class_ap.md").read_text()
    assert table.splitlines()[6].startswith("| dog | 55.0 |")  # mean over the two seeds
    assert (tmp_path / "curves.png") in written and (tmp_path / "curves.png").stat().st_size > 0


def test_status_reads_how_far_each_run_got_and_trains_nothing(tmp_path: Path, capsys):
    out = variant_out(tmp_path, "confirmation", Variant())
    teacher = out / "seed1" / "teacher"
    teacher.mkdir(parents=True)
    (teacher / "results.json").write_text(json.dumps({"test/voc07_map": 0.2673}))
    scratch = out / "seed2" / "scratch"
    (scratch / "csv").mkdir(parents=True)
    (scratch / "config.yaml").write_text("trainer:\n  max_epochs: 20\n")
    # a resumed run keeps its earlier log beside the new one
    (scratch / "csv" / "metrics.before-resume-1.csv").write_text("epoch,step\n0,10\n6,70\n")
    (scratch / "csv" / "metrics.csv").write_text("epoch,step,val/map\n7,80,\n11,120,0.1\n")
    mimic = out / "seed1" / "mimic"
    mimic.mkdir(parents=True)
    (mimic / "config.yaml").write_text("trainer:\n  max_epochs: 20\n")
    study_main(["--data", "voc_cpu", "--phase", "confirmation", "--seeds", "1", "2",
                "--shared-teacher", "--runs", str(tmp_path), "--out", str(tmp_path / "study"),
                "--status"])  # fmt: skip
    table = capsys.readouterr().out
    assert "| teacher | 26.7 | 26.7 (seed 1) |" in table
    assert "| scratch | waiting | epoch 12/20 |" in table
    assert "| mimic | starting (20 epochs) | waiting |" in table
    assert "1 of 11 runs finished" in table  # 3 teacher stages once, 4 students per seed
    assert not (tmp_path / "study").exists() and not (out / "seed2" / "teacher").exists()


def test_lanes_train_teacher_free_students_beside_the_teacher_and_wait_for_inputs(
    tmp_path: Path,
):
    stages = load_stages("voc_cpu")
    plan = partial(plan_seed, variants=[Variant()], runs=tmp_path, phase="confirmation",
                   schedule=[], shared_from=1)  # fmt: skip
    tasks = plan_shared_teachers(1, plan, stages) + [
        task for seed in (1, 2, 3) for task in plan(seed, stages=stages)
    ]
    student_started, events, envs = threading.Event(), [], []
    record = fake_runner([])

    def runner(stage, seed, out, overrides, env=None, quiet=False):
        events.append(("start", seed, stage.name))
        envs.append(env)
        if stage.student and not stage.needs:
            student_started.set()
        if stage.name == "teacher":  # holds its lane until another lane trains a student
            assert student_started.wait(timeout=10), "no student trained beside the teacher"
        result = record(stage, seed, out, overrides, env, quiet)
        events.append(("end", seed, stage.name))
        return result

    run_tasks(tasks, jobs=2, runner=runner)
    starts = [(s, n) for kind, s, n in events if kind == "start"]
    ends = [(s, n) for kind, s, n in events if kind == "end"]
    assert sorted(starts) == sorted(
        [(1, "teacher"), (1, "qteacher"), (1, "ftteacher")]
        + [(seed, s.name) for seed in (1, 2, 3) for s in stages if s.student]
    )
    needs = {s.name: set(s.needs.values()) for s in stages}
    for position, (kind, seed, name) in enumerate(events):
        if kind == "start":  # every input run (seed 1's teacher stages) ended before
            done = {n for k, _, n in events[:position] if k == "end"}
            assert needs[name] <= done, (seed, name)
    assert len(ends) == len(starts)
    assert all(env == {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // 2))} for env in envs)


def test_a_free_lane_prefers_the_runs_that_read_a_teacher(tmp_path: Path):
    """Once the shared teacher stages are trained, the distilling students go before the
    students that read no checkpoint: a lost machine then costs only runs that need no teacher."""
    stages = load_stages("voc_cpu")
    plan = partial(plan_seed, variants=[Variant()], runs=tmp_path, phase="confirmation",
                   schedule=[], shared_from=1)  # fmt: skip
    calls: list = []
    run_tasks(plan_shared_teachers(1, plan, stages), runner=fake_runner(calls))
    calls.clear()
    run_tasks([t for seed in (2, 3) for t in plan(seed, stages=stages)], runner=fake_runner(calls))
    assert [(seed, name) for _, seed, name, _ in calls] == [
        (2, "mimic"), (2, "qmimic"), (3, "mimic"), (3, "qmimic"),
        (2, "scratch"), (2, "quant"), (3, "scratch"), (3, "quant"),
    ]  # fmt: skip


def test_a_failed_run_stops_only_the_runs_that_read_it(tmp_path: Path):
    stages = load_stages("voc_cpu")
    tasks = plan_seed(0, [Variant()], stages, tmp_path, "confirmation", [])
    calls: list = []
    record = fake_runner(calls)

    def runner(stage, seed, out, overrides, env=None, quiet=False):
        if stage.name == "qteacher":
            raise RuntimeError("qteacher diverged")
        return record(stage, seed, out, overrides, env, quiet)

    with pytest.raises(RuntimeError, match="qteacher diverged"):
        run_tasks(tasks, jobs=2, runner=runner)
    assert sorted(c[2] for c in calls) == sorted(
        ["teacher", "ftteacher", "scratch", "quant", "mimic"]
    )  # qmimic reads the failed qteacher and is not trained


def test_teacher_blocks_train_one_teacher_per_block_and_the_report_names_them(
    tmp_path: Path, capsys
):
    stages = load_stages("voc_cpu")
    calls: list = []
    teacher_of = {1: 1, 2: 1, 3: 3, 4: 3}
    tasks = []
    for first in (1, 3):
        plan = partial(plan_seed, variants=[Variant()], runs=tmp_path, phase="confirmation",
                       schedule=[], shared_from=first)  # fmt: skip
        tasks += plan_shared_teachers(first, plan, stages)
    for seed, first in teacher_of.items():
        tasks += plan_seed(seed, [Variant()], stages, tmp_path, "confirmation", [],
                           shared_from=first)  # fmt: skip
    run_tasks(tasks, jobs=2, runner=fake_runner(calls))
    teachers = sorted((seed, name) for _, seed, name, _ in calls if name.endswith("teacher"))
    assert teachers == [(s, n) for s in (1, 3) for n in ("ftteacher", "qteacher", "teacher")]
    out = variant_out(tmp_path, "confirmation", Variant())
    assert (out / "seed4" / "qteacher").resolve() == (out / "seed3" / "qteacher").resolve()
    assert (out / "seed2" / "qteacher").resolve() == (out / "seed1" / "qteacher").resolve()
    block = phase_block(collect(out, [1, 2, 3, 4], stages), [1, 2, 3, 4], [],
                        teacher_of=teacher_of)  # fmt: skip
    assert block["teacher_blocks"] == [[1, 2], [3, 4]]
    # two teachers: the teacher stages' differences over the two runs, not four repeated values
    control = block["comparisons"]["differences"]["ftteacher - teacher"]
    assert control["n"] == 2 and control["low"] is not None
    ftteacher, teacher = block["voc07_map"]["ftteacher"], block["voc07_map"]["teacher"]
    assert control["values"] == pytest.approx(
        [ftteacher[0] - teacher[0], ftteacher[2] - teacher[2]]
    )
    write_study(tmp_path, {"confirmation": block}, "")
    assert (
        "(seed 1's for seeds 1, 2; seed 3's for seeds 3, 4)"
        in (tmp_path / "results.md").read_text()
    )
    study_main(["--data", "voc_cpu", "--phase", "confirmation", "--seeds", "1", "2", "3", "4",
                "--teacher-block", "1,2", "--teacher-block", "3,4", "--runs", str(tmp_path),
                "--status"])  # fmt: skip
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("| qteacher |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")][1:]
    assert cells[1] == f"{cells[0]} (seed 1)" and cells[3] == f"{cells[2]} (seed 3)"
    assert cells[0] != cells[2]  # two teachers, two runs


@pytest.mark.parametrize(
    ("blocks", "message"),
    [
        (["1,2"], "cover seeds [1, 2] but --seeds are [1, 2, 3]"),
        (["1,2", "2,3"], "seed 2 is in two blocks"),
        (["1;2", "3"], "joined by commas"),
    ],
)
def test_teacher_blocks_must_cover_the_seeds_once(tmp_path: Path, capsys, blocks, message):
    argv = ["--data", "voc_cpu", "--phase", "confirmation", "--seeds", "1", "2", "3",
            "--runs", str(tmp_path), "--status"]  # fmt: skip
    for block in blocks:
        argv += ["--teacher-block", block]
    with pytest.raises(SystemExit) as exit_info:
        study_main(argv)
    assert exit_info.value.code != 0
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_interrupted_run_starts_no_further_runs(tmp_path: Path, jobs: int):
    stages = load_stages("voc_cpu")
    tasks = [t for seed in (0, 1) for t in plan_seed(seed, [Variant()], stages, tmp_path,
                                                      "confirmation", [])]  # fmt: skip
    calls: list = []
    record = fake_runner(calls)
    other_started, interrupted = threading.Event(), threading.Event()

    def runner(stage, seed, out, overrides, env=None, quiet=False):
        if (seed, stage.name) == (0, "teacher"):  # the first run: Ctrl-C reaches it
            if jobs == 1:
                raise KeyboardInterrupt  # heard in the one lane's thread
            other_started.wait(timeout=10)
            interrupted.set()
            raise StageFailedError("stage teacher (seed 0) failed", 130)  # the run got it
        other_started.set()
        interrupted.wait(timeout=10)
        time.sleep(0.2)  # the interrupted lane has long stopped the others by now
        return record(stage, seed, out, overrides, env, quiet)

    with pytest.raises(KeyboardInterrupt if jobs == 1 else StageFailedError):
        run_tasks(tasks, jobs=jobs, runner=runner)
    # one lane: nothing more; two: only the run the other lane was in finishes
    assert [(seed, name) for _, seed, name, _ in calls] == ([] if jobs == 1 else [(0, "scratch")])


def test_the_report_leaves_out_where_the_data_lives(tmp_path: Path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(
        "qmimic.cli.study.run_tasks",
        lambda tasks, jobs: run_tasks(tasks, jobs, runner=fake_runner(calls)),
    )
    study_main(["--phase", "tuning", "--seeds", "0", "1", "--runs", str(tmp_path / "runs"),
                "--out", str(tmp_path / "out"), "data.root=/home/someone/photos"])  # fmt: skip
    assert {seed for _, seed, _, overrides in calls} == {0, 1}
    assert all("data.root=/home/someone/photos" in overrides for *_, overrides in calls)
    for name in ("results.md", "results.json"):
        text = (tmp_path / "out" / name).read_text()
        assert "/home/someone/photos" not in text, name
        assert "teacher:trainer.max_epochs=3" in text, name  # the schedule is still reported
