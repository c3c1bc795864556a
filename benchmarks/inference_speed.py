"""The tiny student at the speed of its convolutions: latency at 600x1000, its floor, a profile.

Both detectors are built from the VOC configs (600x1000 input, the paper's test budgets: 6,000
proposals before NMS, 300 after) with random seeded weights, as ``model_speed.py`` builds them,
and timed in one process, one after the other, as the median of repeated one-image calls on one
600x1000 noise image after warm-up:

- PyTorch, the detector as built (``TwoStageDetector.predict``);
- PyTorch prepared for inference (:func:`qmimic.models.inference.for_inference`: BatchNorm
  folded, region pooling by gather), which ``qmimic.predict`` runs; its detections are checked
  against the unprepared model's;
- onnxruntime float32, the graph ``qmimic.export`` writes (checked against PyTorch), and
  onnxruntime int8 (static quantization as ``quantize=int8`` does it, calibrated on noise
  images: the speed is what matters here; int8 accuracy is measured on trained models by the
  benchmark's int8 section);
- OpenVINO float32 and int8: the same two files run by OpenVINO (``predict runtime=openvino``),
  the float32 one checked against PyTorch too;
- the student's convolution floor: its trunk on the image, the RPN head on the feature map and
  the region head's ``layer4`` on 300 pooled regions, timed alone (the same convolutions, BN
  folded, nothing else).

Then ``torch.profiler`` lists the prepared student's top operators by self CPU time.
:func:`measure` returns the ``inference`` section of ``bench/results.json``.

Usage: python benchmarks/inference_speed.py [--repeats 40] [--threads 2] [--work DIR]
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from model_speed import IMAGE_SIZE, build, median_seconds
from torch.profiler import ProfilerActivity, profile

from qmimic.deploy import (
    check_against,
    compare_detections,
    export_onnx,
    quantize_int8,
    random_images,
)
from qmimic.deploy.memory import keep_freed_memory
from qmimic.deploy.runtime import OnnxDetector
from qmimic.models import TwoStageDetector
from qmimic.models.inference import for_inference

VOC = ["data=voc", "model.pretrained=false"]
MODELS = {"teacher": "ResNet-18 teacher (full width)", "student": "ResNet18-1-16 student"}
WIDTHS = {"teacher": 1.0, "student": 0.0625}
RUNTIMES = (
    "PyTorch as built", "PyTorch for inference", "onnxruntime float32", "onnxruntime int8",
    "OpenVINO float32", "OpenVINO int8",
)  # fmt: skip
ONNX_RUNTIMES = {"onnxruntime": RUNTIMES[2:4], "openvino": RUNTIMES[4:6]}
CALIBRATION_IMAGES = 4


def median_ms(step: Callable[[], object], repeats: int) -> float:
    return 1000 * median_seconds(step, repeats, warmup=2)


def floor_step(student: TwoStageDetector, image: torch.Tensor) -> Callable[[], object]:
    """The student's convolutions alone: trunk, RPN head, ``layer4`` on as many pooled regions
    as the test budget keeps (300 at the VOC budgets)."""
    batch, _ = student.prepare([image])
    features = student.features(batch)
    size = student.roi_heads.box_roi_pool.output_size
    pooled = torch.rand(student.rpn.post_nms_top_n(), features.shape[1], size, size)

    def step() -> object:
        maps = student.trunk(batch.tensors)
        student.rpn.head([maps])
        return student.roi_heads.box_head(pooled)

    return step


def profile_rows(step: Callable[[], object], rows: int = 12) -> list[dict]:
    """The top ``rows`` operators of ``step`` by self CPU time, per call of ``step``."""
    with profile(activities=[ProfilerActivity.CPU]) as recorded:
        for _ in range(3):
            step()
    events = sorted(recorded.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    return [
        {
            "operator": e.key,
            "calls": e.count // 3,
            "ms": e.self_cpu_time_total / 3000,
            "share": e.self_cpu_time_total / total,
        }
        for e in events[:rows]
    ]


def onnx_models(
    detector: TwoStageDetector, image: torch.Tensor, folder: Path, threads: int
) -> tuple[dict[str, OnnxDetector], dict[str, str], bool]:
    """The float32 and int8 ONNX files of ``detector`` (in ``folder``) in each runtime, keyed
    by :data:`RUNTIMES` names, and each runtime's float32 agreement with PyTorch on ``image``:
    summaries by runtime and whether all passed."""
    float_path, int8_path = folder / "float32.onnx", folder / "int8.onnx"
    export_onnx(detector, float_path, image)
    size = tuple(image.shape[-2:])
    quantize_int8(float_path, int8_path, random_images(size, CALIBRATION_IMAGES, seed=1))
    models, summaries, passed = {}, {}, True
    for runtime, (float_name, int8_name) in ONNX_RUNTIMES.items():
        models[float_name] = OnnxDetector(float_path, threads=threads, runtime=runtime)
        models[int8_name] = OnnxDetector(int8_path, threads=threads, runtime=runtime)
        agreement = check_against(detector, models[float_name], [image])
        summaries[runtime] = agreement.summary()
        passed = passed and agreement.passed
    return models, summaries, passed


def time_model(
    role: str, image: torch.Tensor, repeats: int, threads: int, work: Path, base: list[str]
) -> tuple[dict, TwoStageDetector]:
    """Every runtime of one detector: its row of the table, and the prepared PyTorch model."""
    detector, _ = build([*base, f"model.width={WIDTHS[role]}"])
    prepared = for_inference(copy.deepcopy(detector))
    with torch.inference_mode():
        reference, found = detector.predict([image])[0], prepared.predict([image])[0]
    # every detection, both ways, within the export check's tolerances
    identical = compare_detections(reference, found, top_k=len(reference["scores"])).passed
    folder = work / role
    folder.mkdir(parents=True, exist_ok=True)
    exported, agreement, agrees = onnx_models(detector, image, folder, threads)
    steps = {
        RUNTIMES[0]: lambda: detector.predict([image]),
        RUNTIMES[1]: lambda: prepared.predict([image]),
        **{name: partial(model.predict, image) for name, model in exported.items()},
    }
    ms = {}
    with torch.inference_mode():
        for runtime, step in steps.items():
            ms[runtime] = median_ms(step, repeats)
            print(f"  {MODELS[role]}, {runtime}: {ms[runtime]:.1f} ms", flush=True)
    row = {"model": MODELS[role], "ms": ms, "prepared_detects_the_same": identical,
           "onnx_agreement": agreement, "onnx_agrees": agrees}  # fmt: skip
    return row, prepared


def measure(
    repeats: int,
    threads: int,
    work: Path | None = None,
    base: list[str] = VOC,
    size: tuple[int, int] = IMAGE_SIZE,
) -> dict:
    """The ``inference`` section of ``bench/results.json``: per model ``ms`` by runtime, the
    student's convolution floor and the ratios, and the prepared student's profile.

    ``base`` (train-config overrides the models are built from) and ``size`` (the image) are the
    VOC configs at 600x1000 unless a caller (a test) asks for a smaller case.
    """
    torch.set_num_threads(threads)
    load = os.getloadavg()[0]
    image = torch.rand(3, *size, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory(prefix="qmimic-inference-") as scratch:
        work = work or Path(scratch)
        teacher, _ = time_model("teacher", image, max(3, repeats // 5), threads, work, base)
        student, prepared = time_model("student", image, repeats, threads, work, base)
    with torch.inference_mode():
        floor_ms = median_ms(floor_step(prepared, image), repeats)
        profile_table = profile_rows(lambda: prepared.predict([image]))
    print(f"  student convolutions alone: {floor_ms:.1f} ms", flush=True)
    teacher_ms, student_ms = teacher["ms"][RUNTIMES[1]], student["ms"][RUNTIMES[1]]
    return {
        "size": list(size),
        "threads": threads,
        "load_average": load,
        "repeats": repeats,
        "models": [teacher, student],
        "floor_ms": floor_ms,
        "teacher_over_student": teacher_ms / student_ms,
        "student_over_floor": student_ms / floor_ms,
        "profile": profile_table,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="keep the ONNX files here")
    args = parser.parse_args()
    keep_freed_memory()  # as qmimic.predict and bench.py run models
    from report import inference_tables

    print(inference_tables({"inference": measure(args.repeats, args.threads, args.work)}))


if __name__ == "__main__":
    main()
