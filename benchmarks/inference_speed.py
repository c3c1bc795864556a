"""The tiny student at the speed of its convolutions: latency at 600x1000, its floor, a profile.

Both detectors are built from the VOC configs (600x1000 input, the paper's test budgets: 6,000
proposals before NMS, 300 after) with random seeded weights, as ``model_speed.py`` builds them,
and timed in one process, one after the other, as the median of ``--repeats`` eval-mode
``predict`` calls on one 600x1000 noise image after warm-up:

- the full-width ResNet-18 teacher and the ResNet18-1-16 student as they are built;
- the same student after :func:`qmimic.models.fusion.fold_batchnorm` (what ``predict`` and the
  export run), with its detections checked against the unfolded student's;
- the student's convolution floor: its trunk on the image, the RPN head on the feature map and
  the region head's ``layer4`` on 300 pooled regions, timed alone (the same convolutions, BN
  folded, nothing else).

Then ``torch.profiler`` lists the folded student's top operators by self CPU time.

Usage: python benchmarks/inference_speed.py [--repeats 40] [--threads 2] [--out bench/inference.md]
"""

from __future__ import annotations

import argparse
import copy
import os
from collections.abc import Callable
from pathlib import Path

import torch
from model_speed import IMAGE_SIZE, build, median_seconds
from torch.profiler import ProfilerActivity, profile

from qmimic.models.fusion import fold_batchnorm

VOC = ["data=voc", "model.pretrained=false"]


def median_ms(step: Callable[[], object], repeats: int) -> float:
    return 1000 * median_seconds(step, repeats, warmup=2)


def floor_step(student, image: torch.Tensor) -> Callable[[], object]:
    """The student's convolutions alone: trunk, RPN head, ``layer4`` on 300 pooled regions."""
    batch, _ = student.prepare([image])
    features = student.features(batch)
    size = student.roi_heads.box_roi_pool.output_size
    pooled = torch.rand(300, features.shape[1], size, size)

    def step() -> object:
        maps = student.trunk(batch.tensors)
        student.rpn.head([maps])
        return student.roi_heads.box_head(pooled)

    return step


def same_detections(a: dict, b: dict) -> bool:
    return (
        torch.equal(a["labels"], b["labels"])
        and torch.allclose(a["boxes"], b["boxes"], atol=1e-2)
        and torch.allclose(a["scores"], b["scores"], atol=1e-4)
    )


def profile_table(step: Callable[[], object], rows: int = 12) -> str:
    with profile(activities=[ProfilerActivity.CPU]) as recorded:
        for _ in range(3):
            step()
    events = sorted(recorded.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1
    lines = ["| operator | calls per image | self CPU ms per image | share |", "|---|---|---|---|"]
    for e in events[:rows]:
        lines.append(
            f"| `{e.key}` | {e.count // 3} | {e.self_cpu_time_total / 3000:.2f} | "
            f"{100 * e.self_cpu_time_total / total:.1f}% |"
        )
    return "\n".join(lines)


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/inference.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    image = torch.rand(3, *IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    teacher, _ = build([*VOC, "model.width=1.0"])
    student, _ = build([*VOC, "model.width=0.0625"])
    folded = fold_batchnorm(copy.deepcopy(student))
    identical = same_detections(student.predict([image])[0], folded.predict([image])[0])
    teacher_repeats = max(3, args.repeats // 5)
    times = {
        "ResNet-18 teacher (full width)": median_ms(
            lambda: teacher.predict([image]), teacher_repeats),
        "ResNet18-1-16 student": median_ms(lambda: student.predict([image]), args.repeats),
        "ResNet18-1-16 student, BN folded": median_ms(
            lambda: folded.predict([image]), args.repeats),
        "its convolutions alone (floor)": median_ms(floor_step(folded, image), args.repeats),
    }  # fmt: skip
    teacher_ms = times["ResNet-18 teacher (full width)"]
    student_ms = times["ResNet18-1-16 student, BN folded"]
    floor_ms = times["its convolutions alone (floor)"]
    lines = [
        "# Inference speed at 600x1000 (VOC budgets: 6,000 -> 300 proposals)",
        "",
        f"torch {torch.__version__}, {args.threads} threads, load average {load:.2f} at start; "
        "random seeded weights; median of repeated `predict` calls on one image, batch 1.",
        "",
        "| model | CPU ms/image |",
        "|---|---|",
        *(f"| {name} | {ms:.1f} |" for name, ms in times.items()),
        "",
        f"- student (BN folded) is {teacher_ms / student_ms:.1f}x faster than the teacher "
        "(target >= 40x)",
        f"- student total / convolution floor: {student_ms / floor_ms:.2f} (target <= 2)",
        f"- folded and unfolded student give the same detections: {identical}",
        "",
        "Top operators of the folded student (self CPU time, 3 calls):",
        "",
        profile_table(lambda: folded.predict([image])),
        "",
    ]
    text = "\n".join(lines)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
