"""``make bench``: what a user takes away, measured in one run and written to ``bench/``.

Sections, in order (each written to ``bench/results.json`` and ``bench/results.md`` as soon as it
is done, so a crash keeps what was measured; training resumes on the next run):

1. quality: every stage of the method (teacher, quantized teacher, ResNet18-1-16 scratch,
   quantized only, mimic, Quantization Mimic) on the built-in ``shapes`` data for each seed,
   through ``qmimic.pipeline`` on a benchmark schedule (shorter than ``make demo``'s);
2. widths: VOC07 mAP against student width for scratch and Quantization Mimic;
3. photos (only with ``--photos ROOT``, a Pascal VOC 2007 tree): JPEG decoding, the ``voc_cpu``
   train loader and the student, teacher and distillation step times on real photographs
   (``photo_speed.py``);
4. speed: a training step of the student alone against a distillation step, evaluation speed
   against torchmetrics, train-loader throughput, then parameters, GFLOPs and CPU latency per
   image (600x1000 and the data's own size) of the models as ``predict`` runs them;
5. sizes: latency over input sizes (320, 480, 600 short side) of the teacher and the student
   beside torchvision's two mobile Faster R-CNNs (``size_speed.py``);
6. inference: the full-width teacher and the ResNet18-1-16 student at 600x1000 in PyTorch (as
   built and prepared for inference), onnxruntime and OpenVINO (float32 and int8), the
   student's convolution floor, and a profile of its top operators (``inference_speed.py``);
7. int8: the seed-0 Quantization Mimic student and the seed-0 stage-1 teacher exported to
   ONNX, float32 against int8 in onnxruntime and OpenVINO, speed and mAP on the test split;
8. picture: that student's detections on four test images (``bench/detections.jpg``).

Models are timed for inference as ``qmimic.predict`` runs them, with freed memory kept in the
process (:func:`qmimic.deploy.memory.keep_freed_memory`, set just before the first such timing:
the speed section's latencies); the training, loader and evaluation timings come before it, in
the process as ``qmimic.train`` and ``qmimic.evaluate`` run.

``--quick`` (``BENCH_QUICK=1 make bench``) runs every section at smoke-test size (a few batches
per stage, fewer repetitions): it checks the machinery in minutes; its mAP figures mean nothing.

    python benchmarks/bench.py [--quick] [--out bench] [--runs outputs/bench] [--threads 2]
        [--photos ~/data/voc2007-400] [--only SECTION ... [--merge]]
"""

from __future__ import annotations

import argparse
import datetime
import os
import time
from pathlib import Path

import distill_step
import eval_speed
import inference_speed
import int8_speed
import loader_speed
import machine_load
import model_speed
import photo_speed
import pictures
import quality
import size_speed
import torch

from qmimic.deploy.memory import keep_freed_memory
from qmimic.io.results import write_json
from report import (
    load_results,
    markdown_report,
    merged_with_earlier,
    plot_latency,
    plot_quality,
    plot_width,
)

# Training schedule of every quality and width run: the teacher and students get 3 epochs (the
# demo gives the teacher 5 and the students 6), stage 2 keeps its 1 epoch.
SCHEDULE = ["teacher:trainer.max_epochs=3", "students:trainer.max_epochs=3"]
QUICK_SCHEDULE = [
    "trainer.max_epochs=1", "trainer.limit_train_batches=8", "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=6", "qteacher:quant.calibration_batches=2",
    "quant:quant.calibration_batches=2", "qmimic:quant.calibration_batches=2",
]  # fmt: skip
SEEDS = [0, 1, 2]
QUICK_SEEDS = [0]
# Further widths trained for the width plot (seed 0): {width: methods}. 1/16 comes from the
# quality runs and scratch at 1/4 is the stage-1 teacher itself.
WIDTH_RUNS = {1 / 32: ["scratch", "qmimic"], 1 / 4: ["qmimic"]}
QUICK_WIDTH_RUNS = {1 / 32: ["scratch", "qmimic"]}
NOT_RUN = [
    {
        "width": 1.0,
        "reason": "a full-width ResNet-18 detector costs about 16x the 1/4 teacher's convolutions "
        "per step, beyond a 60-minute CPU budget; train it on a GPU (README, reproduction)",
    }
]
# Latency models: (name, compose overrides, input size).
FULL_SIZE = model_speed.IMAGE_SIZE
DATA_SIZE = (192, 192)
LATENCY_MODELS = [
    ("ResNet18 teacher (full width)", ["data=voc", "model.width=1"], FULL_SIZE),
    ("ResNet18-1-16 student", ["data=voc", "model.width=0.0625"], FULL_SIZE),
    ("ResNet18-1-32 student", ["data=voc", "model.width=0.03125"], FULL_SIZE),
    ("ResNet18-1-4 teacher (shapes)", ["+experiment=teacher_shapes"], DATA_SIZE),
    ("ResNet18-1-16 student (shapes)", ["+experiment=scratch_shapes"], DATA_SIZE),
    ("ResNet18-1-32 student (shapes)", ["+experiment=scratch_shapes", "model.width=0.03125"],
     DATA_SIZE),
]  # fmt: skip


class Report:
    """``results.json`` / ``results.md`` under ``out``, rewritten after every section."""

    def __init__(self, out: Path, meta: dict, merge: bool = False):
        self.out, self.results, self.started = out, {"meta": meta}, time.perf_counter()
        self.others = machine_load.OtherLoad()
        if merge and (out / "results.json").is_file():
            self.results = merged_with_earlier(load_results(out / "results.json"), meta)
        out.mkdir(parents=True, exist_ok=True)

    def add(self, key: str, section: dict) -> None:
        self.results[key] = section
        self.results.get("earlier", {}).pop(key, None)
        self.results["meta"]["wall_time_s"] = time.perf_counter() - self.started
        self.results["meta"]["others_cpu_share"] = self.others.share()
        write_json(self.out / "results.json", self.results)
        (self.out / "results.md").write_text(markdown_report(self.results))


def speed(quick: bool, meta: dict) -> dict:
    """The ``speed`` section, every figure measured in this process: the training, evaluation
    and loader timings first, then the latencies with freed memory kept in the process (as
    ``qmimic.predict`` runs models; ``meta["reuse_memory"]`` says whether that took effect)."""
    repeats = 2 if quick else 5
    step = distill_step.measure(repeats=6 if quick else 15)
    print(f"  distillation step / (student + teacher) = {step['ratio']:.3f}", flush=True)
    evaluation = eval_speed.measure(500 if quick else eval_speed.VOC07_TEST_IMAGES)
    loader = loader_speed.measure(batches=10 if quick else 100)
    meta["reuse_memory"] = keep_freed_memory()
    latency = []
    for name, overrides, size in LATENCY_MODELS:
        row = model_speed.latency_row(name, overrides, size, repeats)
        print(f"  {name} @ {size[0]}x{size[1]}: {row['ms']:.1f} ms/image", flush=True)
        latency.append(row)
    teacher, student = latency[0], latency[1]
    return {
        "latency": latency,
        "latency_ratio": {
            "teacher": teacher["model"],
            "student": student["model"],
            "size": list(FULL_SIZE),
            "ratio": teacher["ms"] / student["ms"],
        },
        "train_step": step,
        "eval": evaluation,
        "loader": loader,
    }


SECTION_NAMES = ("quality", "widths", "photos", "speed", "sizes", "inference", "int8", "picture")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    quick = os.environ.get("BENCH_QUICK", "0") not in ("", "0")
    parser.add_argument("--quick", action="store_true", default=quick)
    parser.add_argument("--out", type=Path, default=Path("bench"))
    parser.add_argument(
        "--runs", type=Path, default=None, help="training runs (default: outputs/bench[-quick])"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--photos", type=Path, default=None, help="a Pascal VOC 2007 tree: adds the photos section"
    )
    parser.add_argument(
        "--only", nargs="+", choices=SECTION_NAMES, default=None, metavar="SECTION",
        help=f"run only these sections ({', '.join(SECTION_NAMES)}), into --out; widths, int8 "
        "and picture read the quality runs",
    )  # fmt: skip
    parser.add_argument(
        "--merge", action="store_true",
        help="with --only: keep the other sections already in --out (each dated with the run "
        "that measured it) instead of writing only these",
    )  # fmt: skip
    args = parser.parse_args()
    if args.merge and not args.only:
        raise SystemExit("error: --merge keeps the sections --only does not run; add --only")
    torch.set_num_threads(args.threads)
    runs = args.runs or Path("outputs/bench-quick" if args.quick else "outputs/bench")
    schedule = QUICK_SCHEDULE if args.quick else SCHEDULE
    seeds = QUICK_SEEDS if args.quick else SEEDS
    chosen = set(args.only or SECTION_NAMES) - ({"photos"} if args.photos is None else set())
    if args.only and "photos" in args.only and args.photos is None:
        raise SystemExit("error: --only photos needs --photos ROOT (a Pascal VOC 2007 tree)")
    report = Report(args.out, {
        "quick": args.quick, "torch": torch.__version__, "threads": args.threads,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "load_average": os.getloadavg()[0], "seeds": seeds, "schedule": schedule,
        "runs_dir": str(runs), "reused_runs": any(runs.glob("*/seed*/*/results.json")),
        "sections": [name for name in SECTION_NAMES if name in chosen],
    }, merge=args.merge)  # fmt: skip

    if "quality" in chosen:
        print("== quality", flush=True)
        report.add("quality", quality.quality(runs, seeds, schedule))
        plot_quality(report.results, args.out / "quality.png")
    if "widths" in chosen:
        print("== widths", flush=True)
        width_runs = QUICK_WIDTH_RUNS if args.quick else WIDTH_RUNS
        known = report.results.get("quality") or quality.quality(runs, seeds, schedule)
        section = quality.widths(runs, known, seeds, width_runs, [0], schedule, NOT_RUN)
        report.add("widths", section)
        plot_width(report.results, args.out / "width.png")
    # Before any section that loads OpenVINO: a process that has run OpenVINO's runtime can
    # crash when it later forks (here: the photo loader's worker processes, measured to
    # segfault after the inference section).
    if "photos" in chosen:
        print("== photos", flush=True)
        report.add("photos", photo_speed.measure(args.photos, repeats=6 if args.quick else 15))
    if "speed" in chosen:
        print("== speed", flush=True)
        report.add("speed", speed(args.quick, report.results["meta"]))
        plot_latency(report.results, args.out / "latency.png")
    # inference timings as qmimic.predict runs models (reuse_memory=true)
    report.results["meta"]["reuse_memory"] = keep_freed_memory()
    if "sizes" in chosen:
        print("== sizes", flush=True)
        sizes = [(64, 107)] if args.quick else size_speed.SIZES
        report.add("sizes", size_speed.measure(repeats=2 if args.quick else 5, sizes=sizes))
    if "inference" in chosen:
        print("== inference", flush=True)
        repeats = 3 if args.quick else 30
        report.add("inference", inference_speed.measure(repeats, args.threads, args.out / "int8"))
    if "int8" in chosen:
        print("== int8", flush=True)
        images = 50 if args.quick else None
        for key, stage in (("int8", "qmimic"), ("int8_teacher", "teacher")):
            ckpt = runs / "quality" / "seed0" / stage / "checkpoints" / "last.ckpt"
            out = args.out / "int8" / stage
            report.add(key, int8_speed.int8_section(ckpt, out, images, args.threads))
    if "picture" in chosen:
        student = runs / "quality" / "seed0" / "qmimic" / "checkpoints" / "last.ckpt"
        print("== picture", flush=True)
        print(f"  {pictures.detections_picture(student, args.out / 'detections.jpg')}", flush=True)

    print(markdown_report(report.results))
    print(f"written to {args.out / 'results.md'}, results.json and the PNG plots")


if __name__ == "__main__":
    main()
