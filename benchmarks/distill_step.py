"""Cost of one distillation training step against its parts, measured in one run.

Prints the median time of: a student training step (detection losses, backward, SGD step), a
teacher forward without autograd (the feature map the mimic loss reads), and a distillation
step (``DistillModule.detection_losses`` + backward + SGD step), then the ratio
``distill / (student + teacher)``; the target is at most 1.15.

    python benchmarks/distill_step.py [--teacher-width 0.25] [--student-width 0.0625] [--size 192]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from qmimic.models import build_detector
from qmimic.modules import DistillModule

CPU_BUDGET = dict(  # the built-in data's budgets (conf/data/shapes.yaml)
    num_classes=7, anchor_sizes=(16, 32, 64, 128), rpn_pre_nms_top_n_train=600,
    rpn_post_nms_top_n_train=300, rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100,
    box_batch_size_per_image=64, roi_output_size=7,
)  # fmt: skip


def median_seconds(step, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher-width", type=float, default=0.25)
    parser.add_argument("--student-width", type=float, default=1 / 16)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--roi-sampling-ratio", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sizes = dict(min_size=args.size, max_size=args.size, roi_sampling_ratio=args.roi_sampling_ratio)
    teacher = build_detector(width=args.teacher_width, **CPU_BUDGET, **sizes)
    budget = {k: list(v) if isinstance(v, tuple) else v for k, v in CPU_BUDGET.items()}
    target = "qmimic.models.build_detector"
    config = {"model": {"_target_": target, "width": args.teacher_width, **budget, **sizes}}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "teacher.ckpt"
        state = {f"net.{k}": v for k, v in teacher.state_dict().items()}
        torch.save({"state_dict": state, "qmimic_config": config}, ckpt)
        student = build_detector(width=args.student_width, **CPU_BUDGET, **sizes).train()
        module = DistillModule(
            build_detector(width=args.student_width, **CPU_BUDGET, **sizes),
            str(ckpt),
            optimizer=partial(torch.optim.SGD, lr=1e-3),
        ).train()
    images = [torch.rand(3, args.size, args.size) for _ in range(args.batch)]
    targets = [{"boxes": torch.tensor([[20.0, 30.0, 90.0, 110.0], [100.0, 40.0, 150.0, 80.0]]),
                "labels": torch.tensor([1, 3])} for _ in images]  # fmt: skip
    student_opt = torch.optim.SGD(student.parameters(), lr=1e-3)
    distill_opt = module.configure_optimizers()["optimizer"]

    def student_step() -> None:
        student_opt.zero_grad()
        sum(student.losses(images, targets).values()).backward()
        student_opt.step()

    def teacher_forward() -> None:
        with torch.no_grad():
            batch, _ = module.teacher.prepare(images)
            module.teacher.trunk(batch.tensors)

    def distill_step() -> None:
        distill_opt.zero_grad()
        sum(module.detection_losses(images, targets).values()).backward()
        distill_opt.step()

    # Interleave the three measurements so machine noise hits all of them alike.
    samples = {"student step": [], "teacher forward (no grad)": [], "distillation step": []}
    for _ in range(3):
        samples["student step"].append(median_seconds(student_step, args.repeats // 3))
        samples["teacher forward (no grad)"].append(
            median_seconds(teacher_forward, args.repeats // 3)
        )
        samples["distillation step"].append(median_seconds(distill_step, args.repeats // 3))
    result = {name: statistics.median(values) for name, values in samples.items()}
    print(
        f"batch {args.batch} x {args.size}px, teacher width {args.teacher_width}, student "
        f"width {args.student_width:.4g}, {args.threads} threads"
    )
    for name, seconds in result.items():
        print(f"  {name:<28} {1000 * seconds:8.1f} ms")
    ratio = result["distillation step"] / (
        result["student step"] + result["teacher forward (no grad)"]
    )
    print(
        f"  distill / (student + teacher) = {ratio:.3f}  (target <= 1.15: "
        f"{'PASS' if ratio <= 1.15 else 'MISS'})"
    )


if __name__ == "__main__":
    main()
