"""Tables and plots of a benchmark's ``bench/results.json`` (written by ``make bench``).

Used by the benchmark itself and by ``notebooks/02_results.ipynb``. The JSON holds optional
sections, each present when it was run:

- ``quality``: ``rows`` per stage (teacher, qteacher, scratch, quant, mimic, qmimic) with
  ``metrics[key] = {"values", "mean", "std"}`` as fractions, ``parameters``, ``gflops``,
  ``minutes``, ``runs``, ``label``, ``width``; ``qteacher_before`` (the float teacher's VOC07 mAP
  before stage 2) and ``verdict`` (whether qmimic > mimic > scratch on the mean);
- ``widths``: ``points`` (``method``, ``width``, ``voc07_map`` as above, ``source``) and
  ``not_run`` (``width``, ``reason``);
- ``speed``: ``latency`` rows (``model``, ``arch``, ``width``, ``size`` [H, W], ``parameters``,
  ``gflops``, ``ms``, ``proposals``), ``latency_ratio``, ``train_step``, ``eval``, ``loader``;
- ``inference``: ``models`` (teacher, student: ``model``, ``ms`` by runtime,
  ``prepared_detects_the_same``, ``onnx_agreement`` by ONNX runtime), ``floor_ms``,
  ``teacher_over_student``, ``student_over_floor``, ``profile`` rows (``operator``, ``calls``,
  ``ms``, ``share``), ``size``, ``threads``, ``load_average``;
- ``sizes`` (``size_speed.py``): ``sizes`` ([H, W] each), ``rows`` (``model``, ``ms`` by
  ``"HxW"``), ``teacher_over_student`` by ``"HxW"``, ``threads``, ``load_average``;
- ``photos`` (``photo_speed.py``, with ``--photos``): ``decode`` (``images``,
  ``pil_images_per_s``, ``torchvision_images_per_s``, ``same_pixels``), ``loader`` rows as in
  ``speed``, ``steps`` (as ``train_step``, with ``batch`` and ``sizes``), ``threads``,
  ``load_average``;
- ``int8`` (the student) and ``int8_teacher``: ``model``, ``size``, ``rows`` (``runtime``,
  ``ms``, ``voc07_map``, ``map``), ``speedup``, ``voc07_map_cost``;
- ``meta``: the run's facts, with ``others_cpu_share`` (the share of the CPUs' time other
  processes used during the run, ``machine_load.py``);
- ``earlier`` (a run with ``--only --merge``): for each section kept from an earlier run, that
  run's ``meta``.

Plots need matplotlib (``pip install 'qmimic[report]'``).
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

from qmimic.errors import UserError
from qmimic.runs.summary import markdown_table, points
from qmimic.stages import stage_names


def load_results(path: str | Path) -> dict[str, Any]:
    """The benchmark results at ``path`` (a ``results.json``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no benchmark results at {path}; run `make bench` to write them")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); run `make bench` again") from exc


def width_name(width: float) -> str:
    """``1``, ``1/4``, ``1/16``... for a channel-width multiplier."""
    return "1" if width >= 1 else f"1/{round(1 / width)}"


def quality_table(results: dict) -> str:
    """Rows of the paper's VOC table on the benchmark's data: mAP mean ± std over seeds."""
    quality = results["quality"]
    rows = []
    for stage in stage_names():
        row = quality["rows"].get(stage)
        if row is None:
            continue
        metrics = row["metrics"]
        rows.append([
            row["label"], points(metrics.get("test/voc07_map")), points(metrics.get("test/map")),
            f"{row['parameters']:,}", f"{row['gflops']:.3f}", f"{row['minutes']:.1f}",
            str(row["runs"]),
        ])  # fmt: skip
    header = ["model", "VOC07 mAP@0.5", "COCO mAP", "parameters", "GFLOPs", "minutes", "seeds"]
    text = markdown_table(header, rows)
    if "qteacher_before" in quality:
        text += (
            f"\nStage 2 starts from the float teacher at {points(quality['qteacher_before'])} "
            "VOC07 mAP (the qteacher row is after quantization and fine-tuning).\n"
        )
    if quality.get("verdict"):
        text += f"\n{quality['verdict']}\n"
    return text


def width_table(results: dict) -> str:
    """VOC07 mAP against channel width, one row per (method, width) point."""
    widths = results["widths"]
    rows = [
        [p["method"], width_name(p["width"]), points(p["voc07_map"]), p["source"]]
        for p in sorted(widths["points"], key=lambda p: (p["method"], -p["width"]))
    ]
    text = markdown_table(["method", "width", "VOC07 mAP@0.5", "from"], rows)
    for skipped in widths.get("not_run", []):
        text += f"\nWidth {width_name(skipped['width'])} not trained: {skipped['reason']}\n"
    return text


def latency_table(results: dict) -> str:
    """Parameters, GFLOPs and CPU milliseconds per image (batch 1) per model and input size."""
    speed = results["speed"]
    rows = [
        [r["model"], width_name(r["width"]), f"{r['size'][0]}x{r['size'][1]}",
         f"{r['parameters']:,}", f"{r['gflops']:.2f}", f"{r['ms']:.1f}", str(r["proposals"])]
        for r in speed["latency"]
    ]  # fmt: skip
    header = ["model", "width", "input", "parameters", "GFLOPs", "CPU ms/image", "proposals"]
    text = markdown_table(header, rows)
    ratio = speed.get("latency_ratio")
    if ratio:
        size = f"{ratio['size'][0]}x{ratio['size'][1]}"
        text += (
            f"\n{ratio['student']} is {ratio['ratio']:.1f}x faster than {ratio['teacher']} at "
            f"{size} (target >= 10x: {'met' if ratio['ratio'] >= 10 else 'MISSED'}).\n"
        )
    return text


def cost_table(results: dict) -> str:
    """Training step, evaluation and data loading costs."""
    speed, rows = results["speed"], []
    if "train_step" in speed:
        step = speed["train_step"]
        shape = f"batch {step['batch']} x {step['size']} px"
        rows += [
            ["student training step", f"{step['student_ms']:.1f} ms", shape],
            ["teacher forward, no autograd", f"{step['teacher_forward_ms']:.1f} ms", shape],
            ["distillation step", f"{step['distill_ms']:.1f} ms",
             f"{step['ratio']:.3f} x (student + teacher); target <= {step['target']}"],
        ]  # fmt: skip
    if "eval" in speed:
        ev = speed["eval"]
        rows += [
            ["VOC07 mAP (qmimic)", f"{ev['qmimic_s']:.2f} s", f"{ev['images']} images"],
            ["COCO mAP (torchmetrics)", f"{ev['torchmetrics_s']:.2f} s",
             f"qmimic's VOC07 metric is {ev['speedup']:.1f}x faster"],
        ]  # fmt: skip
    if "loader" in speed:
        lo = speed["loader"]
        rows.append([
            "train loader", f"{lo['images_per_s']:.0f} images/s",
            f"batch {lo['batch_size']}, {lo['num_workers']} workers, {lo['images']} images",
        ])  # fmt: skip
    return markdown_table(["what", "cost", "notes"], rows)


def sizes_table(results: dict) -> str:
    """Latency of every model at every input size (``size_speed.py``)."""
    section = results["sizes"]
    keys = [f"{h}x{w}" for h, w in section["sizes"]]
    rows = [[r["model"], *(f"{r['ms'][k]:.1f}" for k in keys)] for r in section["rows"]]
    rows.append(
        ["teacher / student", *(f"{section['teacher_over_student'][k]:.1f}x" for k in keys)]
    )
    return (
        f"CPU ms per image (median, batch 1, {section['threads']} threads, load average "
        f"{section['load_average']:.2f} at start; random weights; every model resizes to the "
        "column's size; qmimic models prepared for inference, with the VOC test budgets).\n\n"
        + markdown_table(["model", *keys], rows)
    )


def photos_table(results: dict) -> str:
    """Real photographs (``photo_speed.py``): decoding, the train loader, step times."""
    photos = results["photos"]
    decode, step = photos["decode"], photos["steps"]
    sizes = sorted({f"{h}x{w}" for h, w in step["sizes"]})
    shape = f"batch {step['batch']} of real photos ({', '.join(sizes)} px in)"
    rows = [
        ["JPEG decoding, PIL (the loaders' reader)",
         f"{decode['pil_images_per_s']:.0f} images/s", f"{decode['images']} photos"],
        ["JPEG decoding, torchvision decode_jpeg",
         f"{decode['torchvision_images_per_s']:.0f} images/s",
         f"same pixels as PIL: {decode['same_pixels']}"],
        *(
            ["train loader (voc_cpu)", f"{row['images_per_s']:.1f} images/s",
             f"batch {row['batch_size']}, {row['num_workers']} workers, {row['images']} images"]
            for row in photos["loader"]
        ),
        ["student training step", f"{step['student_ms']:.1f} ms", shape],
        ["teacher forward, no autograd", f"{step['teacher_forward_ms']:.1f} ms", shape],
        ["distillation step", f"{step['distill_ms']:.1f} ms",
         f"{step['ratio']:.3f} x (student + teacher); target <= {step['target']}"],
    ]  # fmt: skip
    return (
        f"{photos['threads']} threads, load average {photos['load_average']:.2f} at start.\n\n"
        + markdown_table(["what", "cost", "notes"], rows)
    )


def inference_tables(results: dict) -> str:
    """Teacher and student at 600x1000 in every runtime, the student's floor, its profile."""
    section = results["inference"]
    runtimes = list(section["models"][0]["ms"])
    rows = [[m["model"], *(f"{m['ms'][r]:.1f}" for r in runtimes)] for m in section["models"]]
    size = f"{section['size'][0]}x{section['size'][1]}"
    teacher, student = section["models"]
    pytorch = "PyTorch for inference"
    fastest = min(runtimes, key=lambda r: student["ms"][r])
    profile = [
        [f"`{p['operator']}`", str(p["calls"]), f"{p['ms']:.2f}", f"{100 * p['share']:.1f}%"]
        for p in section["profile"]
    ]
    pairs = [(r, r.replace("float32", "int8")) for r in runtimes if r.endswith("float32")]
    lines = [
        f"CPU ms per {size} image (median, batch 1, {section['threads']} threads, load average "
        f"{section['load_average']:.2f} at start; random seeded weights, VOC budgets).",
        "",
        markdown_table(["model", *runtimes], rows),
        f"- student is {section['teacher_over_student']:.1f}x faster than the teacher, both "
        "prepared, in PyTorch (target >= 60x)",
        f"- student's convolutions alone (floor): {section['floor_ms']:.1f} ms; student / floor "
        f"{section['student_over_floor']:.2f} (target <= 1.3)",
        f"- fastest runtime for the student: {fastest}, {student['ms'][fastest]:.1f} ms "
        f"({student['ms'][pytorch] / student['ms'][fastest]:.2f}x PyTorch for inference)",
        *(
            f"- {float_name.split()[0]} int8 over float32: teacher "
            f"{teacher['ms'][float_name] / teacher['ms'][int8_name]:.2f}x, student "
            f"{student['ms'][float_name] / student['ms'][int8_name]:.2f}x"
            for float_name, int8_name in pairs
        ),
        *(
            f"- {m['model']}: prepared model detects the same: {m['prepared_detects_the_same']}; "
            f"float32 files against PyTorch: {_agreements(m['onnx_agreement'])}"
            for m in section["models"]
        ),
        "",
        "Top operators of the prepared student (self CPU time per image):",
        "",
        markdown_table(["operator", "calls per image", "self CPU ms", "share"], profile),
    ]
    return "\n".join(lines)


def _agreements(agreement: str | dict[str, str]) -> str:
    """The export checks' summaries, by runtime (a single string in results before OpenVINO)."""
    if isinstance(agreement, str):
        return agreement
    return "; ".join(f"{runtime}: {summary}" for runtime, summary in agreement.items())


def int8_table(results: dict, key: str = "int8") -> str:
    """An exported model (section ``key``) in PyTorch, onnxruntime float32 and int8."""
    int8 = results[key]
    rows = [
        [r["runtime"], f"{r['ms']:.1f}", f"{100 * r['voc07_map']:.1f}", f"{100 * r['map']:.1f}"]
        for r in int8["rows"]
    ]
    size = f"{int8['size'][0]}x{int8['size'][1]}"
    text = markdown_table(["runtime", f"CPU ms/image ({size})", "VOC07 mAP@0.5", "COCO mAP"], rows)
    cost = 100 * int8["voc07_map_cost"]  # float32 mAP minus int8 mAP, in points
    change = f"{cost:.1f} points of VOC07 mAP lost" if cost >= 0 else f"{-cost:.1f} points gained"
    return (
        text
        + f"\n{int8['model']}: int8 is {int8['speedup']:.2f}x the speed of float32, {change}.\n"
    )


SECTIONS = (
    ("quality", "Quality (built-in data, mean ± std over seeds)", quality_table),
    ("widths", "mAP against width", width_table),
    ("speed", "Speed: CPU latency per image", latency_table),
    ("speed", "Speed: training, evaluation, data loading", cost_table),
    (
        "sizes",
        "Speed: latency over input sizes, beside torchvision's mobile detectors",
        sizes_table,
    ),
    (
        "inference",
        "Speed: inference at 600x1000 in PyTorch, onnxruntime, OpenVINO",
        inference_tables,
    ),
    ("photos", "Speed: training on real photographs (Pascal VOC 2007)", photos_table),
    ("int8", "int8 export: the Quantization Mimic student", int8_table),
    ("int8_teacher", "int8 export: the teacher", partial(int8_table, key="int8_teacher")),
)


def merged_with_earlier(earlier: dict, meta: dict) -> dict:
    """A results payload for a new run (``meta``) that keeps every section of ``earlier`` (an
    older ``results.json``), each with the facts of the run that measured it under ``earlier``;
    a section the new run writes again replaces its kept copy (drop its ``earlier`` entry)."""
    kept = {key: value for key, value in earlier.items() if key not in ("meta", "earlier")}
    dated = earlier.get("earlier", {})
    return {
        **kept,
        "meta": meta,
        "earlier": {key: dated.get(key, earlier.get("meta", {})) for key in kept},
    }


def run_facts(meta: dict) -> str:
    """One run's facts: torch, threads, load, what else ran, start and length."""
    others = meta.get("others_cpu_share")
    return (
        f"torch {meta.get('torch')}, {meta.get('threads')} threads, load average "
        f"{meta.get('load_average', 0):.2f} at start, started {meta.get('started')}, "
        f"{meta.get('wall_time_s', 0) / 60:.1f} minutes in all"
        + (
            f"; other processes used {100 * others:.1f}% of the CPUs' time meanwhile."
            if others is not None
            else "."
        )
    )


def markdown_report(results: dict) -> str:
    """Every table the results hold, each under a heading, with the run's facts first."""
    meta = results.get("meta", {})
    earlier = results.get("earlier", {})
    parts = ["# qmimic benchmark\n"]
    if meta:
        parts.append(
            f"{'Quick mode (smoke figures only). ' if meta.get('quick') else ''}"
            + run_facts(meta)
            + (
                " Models timed for inference ran with freed memory kept in the process (glibc "
                "`mallopt`, as `qmimic.predict` runs them); the training, loader and evaluation "
                "timings ran before that was set."
                if meta.get("reuse_memory")
                else ""
            )
            + (
                f" Training runs finished before were found under {meta.get('runs_dir')} and "
                "reused (the quality table gives their own minutes)."
                if meta.get("reused_runs") and "quality" in meta.get("sections", ["quality"])
                else ""
            )
            + (
                f" Sections run: {', '.join(meta['sections'])} (`--only`)."
                if "sections" in meta and "quality" not in meta["sections"]
                else ""
            )
            + (
                " The other sections were kept from earlier runs (`--merge`), whose facts are "
                "under their headings."
                if earlier
                else ""
            )
            + "\n"
        )
    for key, title, table in SECTIONS:
        if key in results:
            dated = f"From an earlier run: {run_facts(earlier[key])}\n\n" if key in earlier else ""
            parts.append(f"## {title}\n\n{dated}{table(results)}")
    return "\n".join(parts)


def _figure(width: float = 6.0, height: float = 4.0):
    try:  # matplotlib is optional: only plots need it
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise UserError(f"plots need matplotlib ({exc}); pip install 'qmimic[report]'") from exc
    return plt.subplots(figsize=(width, height), layout="constrained")


def _save(figure, path: str | Path | None):
    if path is not None:
        figure.savefig(path, dpi=120)
    return figure


def plot_quality(results: dict, path: str | Path | None = None):
    """Bar chart of VOC07 mAP per stage, mean with a std error bar; saved to ``path`` if given."""
    figure, axes = _figure()
    rows = [results["quality"]["rows"][s] for s in stage_names() if s in results["quality"]["rows"]]
    stats = [row["metrics"]["test/voc07_map"] for row in rows]
    axes.bar(
        range(len(rows)),
        [100 * s["mean"] for s in stats],
        yerr=[100 * s["std"] for s in stats],
        capsize=4,
        color=["#777777"] * 2 + ["#4c72b0"] * (len(rows) - 2),
    )
    axes.set_xticks(range(len(rows)), [row["label"] for row in rows], rotation=30, ha="right")
    axes.set_ylabel("VOC07 mAP@0.5 (%)")
    axes.set_title("Teachers and 1/16 students (mean ± std over seeds)")
    return _save(figure, path)


def plot_width(results: dict, path: str | Path | None = None):
    """VOC07 mAP against channel width (log scale), one line per method."""
    figure, axes = _figure()
    points = results["widths"]["points"]
    for method in sorted({p["method"] for p in points}):
        mine = sorted((p for p in points if p["method"] == method), key=lambda p: p["width"])
        axes.errorbar(
            [p["width"] for p in mine],
            [100 * p["voc07_map"]["mean"] for p in mine],
            yerr=[100 * p["voc07_map"]["std"] for p in mine],
            marker="o",
            capsize=4,
            label=method,
        )
    ticks = sorted({p["width"] for p in points})
    axes.set_xscale("log", base=2)
    axes.set_xticks(ticks, [width_name(w) for w in ticks])
    axes.set_xlabel("channel width (fraction of ResNet-18)")
    axes.set_ylabel("VOC07 mAP@0.5 (%)")
    axes.legend()
    axes.set_title("mAP against width")
    return _save(figure, path)


def plot_latency(results: dict, path: str | Path | None = None):
    """Horizontal bars of CPU milliseconds per image, one bar per (model, input size)."""
    rows = results["speed"]["latency"]
    figure, axes = _figure(height=0.45 * len(rows) + 1.5)
    labels = [f"{r['model']} @ {r['size'][0]}x{r['size'][1]}" for r in rows]
    axes.barh(range(len(rows)), [r["ms"] for r in rows], color="#4c72b0")
    axes.set_yticks(range(len(rows)), labels)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel("CPU ms per image, batch 1 (log scale)")
    axes.set_title("Latency")
    return _save(figure, path)
