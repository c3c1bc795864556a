"""The study's files: ``results.json`` (every value, so anyone can recompute the statistics),
``results.md`` (the tables) and ``results.png`` (per-seed mAP and the paired differences).

``results.json`` holds a ``tuning`` section (one block per variant) and a ``confirmation`` section
(one block, the latest confirmation); a phase rewrites only its own section. A confirmation on
new seeds (after the defaults changed) moves the one before it to ``earlier_confirmations``, so a
confirmation that failed stays on record beside the one that replaced it; a fresh tuning phase
(after the method's code changed) likewise moves the tuning before it to ``earlier_tunings``
with the reason. Each block: ``seeds``, ``overrides``, the ``recipe`` its defaults composed and
the distinct ``environments`` its runs were trained in (each where recorded), per metric the
values per stage (fractions in [0, 1], one per seed in ``seeds`` order), the distillation
stages' ``mimic_match`` and ``mimic_distance`` (their last validation's, one per seed, where the
runs logged them) and the paired comparisons of :func:`qmimic.studies.statistics.compare`.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from pathlib import Path

from qmimic.io.environment import describe, distinct_environments
from qmimic.io.results import write_json, write_text
from qmimic.metrics.names import (
    FLOAT_TEST,
    MAP,
    MIMIC_DISTANCE,
    MIMIC_MATCH,
    TEST,
    VAL,
    VOC07_MAP,
    key,
)
from qmimic.runs.summary import markdown_table
from qmimic.studies.curves import CURVE_KEY, block_curves
from qmimic.studies.runner import metric_table
from qmimic.studies.statistics import compare

METRIC_KEYS = {VOC07_MAP: key(TEST, VOC07_MAP), MAP: key(TEST, MAP)}
# How closely the distilled students match their teacher on its quantization grid.
PER_CLASS = key(TEST, "per_class_ap")  # {class: VOC07 AP} of a run's test split
MIMIC_KEYS = {MIMIC_MATCH: key(VAL, MIMIC_MATCH), MIMIC_DISTANCE: key(VAL, MIMIC_DISTANCE)}
TARGETS = (
    ("qmimic - mimic", "qmimic - mimic > 0 with the 95% interval above zero"),
    ("mimic - scratch", "mimic - scratch > 0 with the 95% interval above zero"),
)


def phase_block(
    results: dict[str, list[dict]],
    seeds: list[int],
    overrides: list[str],
    recipe: dict | None = None,
    teacher_of: Mapping[int, int] | None = None,
) -> dict:
    """The results.json block of one variant: values per stage and the comparisons on VOC07
    mAP (``comparisons``) and COCO mAP (``comparisons_map``); ``recipe``: the composed
    ``recipe`` config node the variant trained with; ``teacher_of``: seed -> the seed whose
    teacher stages it shared, recorded as ``teacher_blocks`` (lists of seeds, the first trained
    the teacher stages)."""
    block: dict = {"seeds": list(seeds), "overrides": list(overrides)}
    if teacher_of:
        blocks: dict[int, list[int]] = {}
        for seed in seeds:
            blocks.setdefault(teacher_of[seed], []).append(seed)
        block["teacher_blocks"] = list(blocks.values())
    if recipe is not None:
        block["recipe"] = recipe
    environments = distinct_environments(r for runs in results.values() for r in runs)
    if environments:
        block["environments"] = environments
    cost = training_cost(results)
    if cost:
        block["training_cost"] = cost
    for name, logged in METRIC_KEYS.items():
        block[name] = metric_table(results, logged)
    for name, logged in MIMIC_KEYS.items():
        table = metric_table(results, logged)
        if table:
            block[name] = table
    per_class = {
        stage: {name: [r[PER_CLASS][name] for r in runs] for name in runs[0][PER_CLASS]}
        for stage, runs in results.items()
        if runs
        and all(PER_CLASS in r for r in runs)
        and all(set(r[PER_CLASS]) == set(runs[0][PER_CLASS]) for r in runs)
    }
    if per_class:
        block["per_class_ap"] = per_class
    curves = block_curves(results)
    if curves:
        block["curves"] = curves
    before = [r.get(key(FLOAT_TEST, VOC07_MAP)) for r in results.get("qteacher", [])]
    if before and None not in before:
        block["qteacher_before_finetuning"] = before
    teacher_runs = (
        [seeds.index(b[0]) for b in block["teacher_blocks"]] if "teacher_blocks" in block else None
    )
    block["comparisons"] = compare(block["voc07_map"], teacher_runs=teacher_runs)
    block["comparisons_map"] = compare(block["map"], teacher_runs=teacher_runs)
    return block


def training_cost(results: dict[str, list[dict]]) -> dict | None:
    """What the block's runs cost to train, each run counted once (a shared or linked run
    appears under several seeds with the same results): ``runs``, ``wall_hours`` (their
    ``wall_time_s`` summed) and ``thread_hours`` (each run's wall time times its threads: the
    core time it held when the machine ran no more threads than it has cores, more when runs
    side by side shared cores). ``None`` when a run does not record its wall time."""
    distinct = {json.dumps(r, sort_keys=True): r for runs in results.values() for r in runs}
    runs = list(distinct.values())
    if not runs or any("wall_time_s" not in r for r in runs):
        return None
    threads = [int(r.get("environment", {}).get("threads") or 1) for r in runs]
    return {
        "runs": len(runs),
        "wall_hours": sum(r["wall_time_s"] for r in runs) / 3600,
        "thread_hours": sum(r["wall_time_s"] * t for r, t in zip(runs, threads, strict=True))
        / 3600,
    }


def load_results(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def used_seeds(results: dict, phase: str) -> set[int]:
    """The seeds ``phase`` has run in any variant or earlier confirmation (empty when it has
    not run)."""
    if phase == "tuning":
        tunings = [results.get("tuning") or {}, *results.get("earlier_tunings", [])]
        blocks = [b for tuning in tunings for b in tuning.get("variants", {}).values()]
    else:
        blocks = [results.get("confirmation") or {}, *results.get("earlier_confirmations", [])]
    return {seed for block in blocks for seed in block.get("seeds", [])}


def record_confirmation(results: dict, block: dict) -> dict:
    """``results`` with ``block`` as its confirmation. The same seeds again replace the block
    (a resumed or re-collected confirmation); other seeds mean new defaults were confirmed, and
    the block before goes to ``earlier_confirmations``."""
    current = results.get("confirmation")
    if current and current["seeds"] != block["seeds"]:
        results.setdefault("earlier_confirmations", []).append(current)
    results["confirmation"] = block
    return results


def start_new_tuning(results: dict, reason: str) -> dict:
    """``results`` with an empty tuning section; the one before goes to ``earlier_tunings``
    with ``reason`` (why its numbers no longer describe the method), and so does the
    confirmation of its defaults, to ``earlier_confirmations``: until a new confirmation runs,
    no confirmation is quoted as evidence for the method as it now is."""
    current = results.get("tuning")
    if current and current.get("variants"):
        results.setdefault("earlier_tunings", []).append({**current, "superseded": reason})
    confirmation = results.pop("confirmation", None)
    if confirmation:
        superseded = {**confirmation, "superseded": reason}
        results.setdefault("earlier_confirmations", []).append(superseded)
    results["tuning"] = {"variants": {}}
    return results


def pct(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:+.1f}" if signed else f"{100 * value:.1f}"


def seed_table(block: dict) -> str:
    """Per-seed VOC07 mAP of every stage, with the mean."""
    metric = block["voc07_map"]
    header = ["stage", *(f"seed {s}" for s in block["seeds"]), "mean"]
    rows = [
        [stage, *(pct(v) for v in values), pct(statistics.mean(values))]
        for stage, values in metric.items()
    ]
    return markdown_table(header, rows)


def interval_cell(d: dict) -> str:
    """``[low, high]`` in points, or why there is none (one run on each side)."""
    if d["low"] is None:
        return "none (one run each)"
    return f"[{pct(d['low'], signed=True)}, {pct(d['high'], signed=True)}]"


def difference_table(comparisons: dict) -> str:
    """Paired differences in points: mean, 95% t interval, seeds won."""
    rows = [
        [
            name,
            pct(d["mean"], signed=True),
            interval_cell(d),
            f"{d['wins']}/{d['n']}",
            " ".join(pct(v, signed=True) for v in d["values"]),
        ]
        for name, d in comparisons["differences"].items()
    ]
    header = ["paired difference", "mean", "95% t interval", "seeds won", "per seed"]
    return markdown_table(header, rows)


def match_table(block: dict) -> str:
    """Per-seed match rate (%) and distance (steps) of the distilled students, "" if none."""
    match, distance = block.get("mimic_match") or {}, block.get("mimic_distance") or {}
    if not match:
        return ""
    header = ["stage", "measure", *(f"seed {s}" for s in block["seeds"]), "mean"]
    rows = []
    for stage, values in match.items():
        rows.append([stage, "match %", *(pct(v) for v in values), pct(statistics.mean(values))])
        if stage in distance:
            steps = distance[stage]
            rows.append([stage, "distance (steps)", *(f"{v:.2f}" for v in steps),
                         f"{statistics.mean(steps):.2f}"])  # fmt: skip
    return markdown_table(header, rows)


def gap_lines(comparisons: dict) -> list[str]:
    return [
        f"- {student} closes {pct(gap['overall'])}% of the scratch -> teacher gap "
        f"(per seed: {', '.join(pct(g) for g in gap['per_seed'])})"
        for student, gap in comparisons["gap_closed"].items()
    ]


def target_lines(block: dict) -> list[str]:
    """Whether each target of the study is met on this block, with the measured figure."""
    comparisons = block["comparisons"]
    lines = []
    for name, text in TARGETS:
        d = comparisons["differences"].get(name)
        if d:
            met = d["low"] > 0
            lines.append(
                f"- {text}: {'met' if met else 'NOT met'} ({pct(d['mean'], signed=True)}, "
                f"[{pct(d['low'], signed=True)}, {pct(d['high'], signed=True)}])"
            )
    gap = comparisons["gap_closed"].get("qmimic", {}).get("overall")
    if gap is not None:
        verdict = "met" if gap >= 0.35 else "NOT met"
        lines.append(f"- qmimic closes >= 35% of the gap: {verdict} ({pct(gap)}%)")
    control = comparisons["differences"].get("qteacher - ftteacher")
    if control:
        met = abs(control["mean"]) <= 0.01
        lines.append(
            "- quantized teacher within 1 point of the equally fine-tuned float teacher: "
            f"{'met' if met else 'NOT met'} ({pct(control['mean'], signed=True)})"
        )
    return lines


def recipe_line(recipe: dict | None) -> str:
    """The stages' recipe settings on one line (``student.regions=teacher ...``). The block's
    overrides (the study schedule's ``trainer.max_epochs``) replace what they overlap, so the
    line says so: the recipe's ``max_epochs`` are the demo's, not necessarily the block's."""
    if recipe is None:
        return "Recipe: not recorded in this block."
    pairs = [
        f"{group}.{key}={value}"
        for group, settings in recipe.items()
        if isinstance(settings, dict)
        for key, value in settings.items()
    ]
    return f"Recipe (the overrides above take precedence): `{' '.join(pairs)}`."


def block_markdown(title: str, block: dict) -> list[str]:
    lines = [f"### {title}", "", f"Seeds: {', '.join(map(str, block['seeds']))}."]
    if block["overrides"]:
        lines.append(f"Overrides: `{' '.join(block['overrides'])}`.")
    lines.append(recipe_line(block.get("recipe")))
    teacher_blocks = block.get("teacher_blocks") or []
    if len(teacher_blocks) == 1:
        lines.append(
            f"One teacher for all seeds: teacher, qteacher and ftteacher were trained once (seed "
            f"{teacher_blocks[0][0]}) and every seed's students distil from them, so the "
            "teacher rows repeat one run and a difference between two teacher stages is that "
            "one run's, without an interval."
        )
    elif teacher_blocks:
        named = "; ".join(
            f"seed {b[0]}'s for seed{'s' if len(b) > 1 else ''} {', '.join(map(str, b))}"
            for b in teacher_blocks
        )
        lines.append(
            f"One teacher per block of seeds: teacher, qteacher and ftteacher were trained once "
            f"per block ({named}) and each seed's students distil from its block's, so within a "
            "seed mimic and qmimic read the same teacher and the teacher rows repeat one run "
            "per block; a difference between two teacher stages is taken over the blocks' "
            "runs, each once (its 'per seed' values are per block)."
        )
    if block.get("environments"):
        lines.append(f"Trained with: {'; '.join(map(describe, block['environments']))}.")
    cost = block.get("training_cost")
    if cost:
        lines.append(
            f"Training time of its {cost['runs']} runs (each counted once): "
            f"{cost['wall_hours']:.1f} hours of wall time, {cost['thread_hours']:.1f} "
            "thread-hours (wall time x threads of each run; above the core time used when runs "
            "side by side shared the cores)."
        )
    lines += ["", "VOC07 mAP@0.5 (points):", "", seed_table(block)]
    lines += ["Paired differences, VOC07 mAP@0.5:", "", difference_table(block["comparisons"])]
    lines += gap_lines(block["comparisons"])
    matches = match_table(block)
    if matches:
        lines += [
            "",
            "Match rate on the teacher's grid (last validation, the teacher's top proposals): the "
            "share of region feature elements where Q(r(f_s)) = Q(f_t), and the mean "
            "|r(f_s) - f_t| in steps:",
            "",
            matches,
        ]
    lines += ["", "Paired differences, COCO mAP:", ""]
    lines += [difference_table(block["comparisons_map"])]
    return lines


def tuning_summary(variants: dict) -> str:
    """One row per tuning variant: the students' means and the key paired differences."""
    rows = []
    for name, block in variants.items():
        metric, comp = block["voc07_map"], block["comparisons"]
        means = [pct(statistics.mean(metric[s])) if s in metric else "-" for s in
                 ("teacher", "qteacher", "scratch", "mimic", "qmimic")]  # fmt: skip
        diffs = [comp["differences"].get(k) for k in ("qmimic - mimic", "mimic - scratch")]
        cells = [
            f"{pct(d['mean'], signed=True)} [{pct(d['low'], signed=True)}, "
            f"{pct(d['high'], signed=True)}]"
            if d
            else "-"
            for d in diffs
        ]
        gap = comp["gap_closed"].get("qmimic", {}).get("overall")
        rows.append([f"`{name}`", *means, *cells, pct(gap)])
    header = ["variant", "teacher", "qteacher", "scratch", "mimic", "qmimic",
              "qmimic - mimic", "mimic - scratch", "qmimic gap closed %"]  # fmt: skip
    return markdown_table(header, rows)


# The pre-registered rule that turns the tuning phase into defaults (stated before it ran).
SELECTION_RULE = (
    "highest tuning mean of the paired qmimic - scratch difference; on a tie the defaults stay"
)


def selected_variant(variants: dict) -> tuple[str, float] | None:
    """The variant :data:`SELECTION_RULE` picks and its mean qmimic - scratch difference."""
    scored = [
        (block["comparisons"]["differences"]["qmimic - scratch"]["mean"], name == "defaults", name)
        for name, block in variants.items()
        if "qmimic - scratch" in block["comparisons"]["differences"]
    ]
    if not scored:
        return None
    mean, _, name = max(scored)  # the defaults win a tie (True > False)
    return name, mean


def selection_line(variants: dict, confirmed: bool) -> str:
    """What the selection rule picks; ``confirmed``: whether this study holds a confirmation."""
    picked = selected_variant(variants)
    if picked is None:
        return ""
    name, mean = picked
    after = (
        "the confirmation runs the defaults that were committed after tuning."
        if confirmed
        else "no confirmation is recorded here, so a setting picked here becomes a default only "
        "after a confirmation phase on new seeds supports it."
    )
    return (
        f"Selection rule, fixed before tuning: {SELECTION_RULE}. It picks `{name}` "
        f"(qmimic - scratch {pct(mean, signed=True)} points); {after}"
    )


def markdown(results: dict, preamble: str) -> str:
    lines = ["# Quantization Mimic study", "", preamble, ""]
    confirmation = results.get("confirmation")
    if confirmation:
        lines += ["## Confirmation (seeds never used for tuning)", ""]
        lines += target_lines(confirmation) + [""]
        lines += block_markdown("Defaults", confirmation) + [""]
    earlier = results.get("earlier_confirmations", [])
    if earlier:
        lines += [
            "## Earlier confirmations (defaults since changed)",
            "",
            "Each ran the defaults of its time on its own fresh seeds; they are kept so that a "
            "failed confirmation stays on record. The latest one is above.",
            "",
        ]
        for block in earlier:
            seeds = ", ".join(map(str, block["seeds"]))
            if block.get("superseded"):
                lines += [f"Superseded: {block['superseded']}", ""]
            lines += target_lines(block) + [""]
            lines += block_markdown(f"Defaults then (seeds {seeds})", block) + [""]
    tuning = (results.get("tuning") or {}).get("variants", {})
    if tuning:
        lines += ["## Tuning (settings chosen on these seeds only)", ""]
        lines.append(selection_line(tuning, confirmed=bool(confirmation)))
        lines += ["", tuning_summary(tuning)]
        for name, block in tuning.items():
            lines += block_markdown(f"`{name}`", block) + [""]
    for earlier in results.get("earlier_tunings", []):
        lines += ["## Earlier tuning (superseded)", "", f"Why: {earlier['superseded']}", ""]
        lines.append(selection_line(earlier["variants"], confirmed=True))
        lines += ["", tuning_summary(earlier["variants"]), ""]
    return "\n".join(lines) + "\n"


def plot(results: dict, path: Path) -> Path | None:
    """Per-seed VOC07 mAP of each stage and the paired differences with their intervals, for
    the confirmation (or, before it has run, the tuning defaults). ``None`` without
    matplotlib."""
    block = results.get("confirmation") or (results.get("tuning") or {}).get("variants", {}).get(
        "defaults"
    )
    if not block:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    stages = list(block["voc07_map"])
    for position, stage in enumerate(stages):
        values = [100 * v for v in block["voc07_map"][stage]]
        left.scatter([position] * len(values), values, s=16, alpha=0.7)
        left.hlines(statistics.mean(values), position - 0.3, position + 0.3, colors="black")
    left.set_xticks(range(len(stages)), stages, rotation=30)
    left.set_ylabel("VOC07 mAP@0.5 (points)")
    left.set_title(f"per seed (seeds {', '.join(map(str, block['seeds']))}); bar: mean")
    differences = block["comparisons"]["differences"]
    names = list(differences)
    for row, name in enumerate(names):
        d = differences[name]
        if d["low"] is None:  # one run on each side: a point, no interval
            right.plot(100 * d["mean"], row, "o", color="grey")
            continue
        below, above = 100 * (d["mean"] - d["low"]), 100 * (d["high"] - d["mean"])
        right.errorbar(
            100 * d["mean"], row, xerr=[[below], [above]], fmt="o", capsize=4, color="black"
        )
    right.axvline(0, color="grey", linestyle="--")
    right.set_yticks(range(len(names)), names)
    right.invert_yaxis()
    right.set_xlabel("paired difference, points (95% t interval; grey: one run each)")
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def shown_block(results: dict) -> dict | None:
    """The block the study's pictures and per-class table show: the confirmation, or before it
    has run, the tuning defaults."""
    tuning = (results.get("tuning") or {}).get("variants", {})
    return results.get("confirmation") or tuning.get("defaults")


def per_class_markdown(block: dict) -> str:
    """VOC07 AP per class (rows) and stage (columns), mean over the block's seeds, in points."""
    per_class = block["per_class_ap"]
    stages = list(per_class)
    names = list(next(iter(per_class.values())))
    header = ["class", *stages]
    rows = [[name, *(pct(statistics.mean(per_class[s][name])) for s in stages)] for name in names]
    seeds = ", ".join(map(str, block["seeds"]))
    title = f"VOC07 AP per class on the test split, points, mean over seeds {seeds}:"
    return f"# Per-class AP\n\n{title}\n\n{markdown_table(header, rows)}"


def plot_curves(block: dict, path: Path) -> Path | None:
    """Each stage's mean validation VOC07 mAP per epoch; ``None`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, axis = plt.subplots(figsize=(7, 4), layout="constrained")
    for stage, curve in block["curves"].items():
        epochs, values = zip(*curve, strict=True)
        axis.plot([e + 1 for e in epochs], [100 * v for v in values], marker="o", label=stage)
    axis.set_xlabel("epoch")
    axis.set_ylabel(f"{CURVE_KEY} (points)")
    axis.set_title(f"learning curves, mean over seeds {', '.join(map(str, block['seeds']))}")
    axis.legend()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_study(folder: Path, results: dict, preamble: str) -> list[Path]:
    """Write results.json, results.md and (with matplotlib) results.png into ``folder``, and
    for the shown block (:func:`shown_block`) per_class_ap.md and curves.png where its runs
    recorded them."""
    written = [
        write_json(folder / "results.json", results),
        write_text(folder / "results.md", markdown(results, preamble)),
    ]
    picture = plot(results, folder / "results.png")
    block = shown_block(results) or {}
    if block.get("per_class_ap"):
        written.append(write_text(folder / "per_class_ap.md", per_class_markdown(block)))
    curves = plot_curves(block, folder / "curves.png") if block.get("curves") else None
    return written + [p for p in (picture, curves) if p]


def evidence_line(path: Path) -> str:
    """One line quoting a committed study's confirmed paired effects, for the demo's verdict
    ("" when ``path`` holds no confirmation)."""
    block = load_results(path).get("confirmation")
    if not block:
        return ""
    differences = block["comparisons"]["differences"]
    parts = [
        f"{name} {pct(d['mean'], signed=True)} points, 95% CI "
        f"[{pct(d['low'], signed=True)}, {pct(d['high'], signed=True)}], won {d['wins']}/{d['n']}"
        for name in ("qmimic - mimic", "mimic - scratch")
        if (d := differences.get(name))
    ]
    seeds = ", ".join(map(str, block["seeds"]))
    heading = f"Committed study ({path}, confirmation seeds {seeds}, not this run)"
    return f"{heading}: " + "; ".join(parts)
