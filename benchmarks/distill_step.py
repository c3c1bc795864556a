"""Cost of one distillation training step against its parts, measured in one run.

Prints the median time of: a student training step (detection losses, backward, SGD step), a
teacher forward without autograd (the feature map the mimic loss reads), and a distillation
step (``DistillModule.detection_losses`` + backward + SGD step), then the ratio
``distill / (student + teacher)``; the target is at most 1.15. Both detectors are ResNet-18
Faster R-CNN with the built-in data's budgets (``qmimic/conf/data/shapes.yaml``) at square
``--size`` inputs; :func:`measure` returns the same figures.

    python benchmarks/distill_step.py [--teacher-width 0.25] [--student-width 0.0625] [--size 192]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from model_speed import median_seconds
from omegaconf import OmegaConf

from qmimic.conf import load_config
from qmimic.io.checkpoints import load_run, quantization_plan, save_run
from qmimic.models import TwoStageDetector
from qmimic.modules import DistillModule

TARGET_RATIO = 1.15
ROUNDS = 3  # the three measurements are interleaved this many times


def model_config(width: float, size: int, roi_sampling_ratio: int) -> dict:
    """``model`` section of the shapes train config at ``width`` for ``size`` px inputs."""
    cfg = load_config(
        "train",
        [
            "data=shapes",
            f"model.width={width}",
            f"data.image_size={size}",
            f"data.budget.roi_sampling_ratio={roi_sampling_ratio}",
        ],
    )
    return OmegaConf.to_container(cfg.model, resolve=True)


# The quantized teacher's ``quant`` section as qmimic.train saves it (the step is a buffer of the
# saved weights).
QUANT = {
    "_target_": "qmimic.quant.QuantizationPlan",
    "quantizer": {"_target_": "qmimic.quant.FeatureQuantizer", "_partial_": True},
}


def distill_module(
    teacher: TwoStageDetector, teacher_config: dict, student: TwoStageDetector
) -> DistillModule:
    """A Quantization Mimic :class:`DistillModule` training ``student`` against ``teacher``
    (built from the model config ``teacher_config``, given a feature quantizer of step 0.5
    here), handed over as training does: written with ``save_run``, read with ``load_run``."""
    config = {"model": teacher_config, "quant": QUANT}
    quantization_plan(QUANT).apply(teacher)
    teacher.neck.step.fill_(0.5)
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_run(save_run(Path(tmp) / "teacher.ckpt", teacher, config)).detector
    return DistillModule(student, loaded, optimizer=partial(torch.optim.SGD, lr=1e-3))


def measure(
    teacher_width: float = 0.25,
    student_width: float = 1 / 16,
    size: int = 192,
    batch: int = 4,
    repeats: int = 15,
    roi_sampling_ratio: int = 1,
) -> dict[str, Any]:
    """Median times of a student step, a teacher forward and a distillation step on ``batch``
    random ``[3, size, size]`` images with the same two boxes each (placed for 192 px, scaled
    with ``size``), the models built from the shapes config (see :func:`measure_on`).

    Returns:
        ``{"student_ms": float, "teacher_forward_ms": float, "distill_ms": float,
        "ratio": float, "target": 1.15, "batch": int, "size": int}`` with
        ``ratio = distill_ms / (student_ms + teacher_forward_ms)``.
    """
    torch.manual_seed(0)
    teacher_config = model_config(teacher_width, size, roi_sampling_ratio)
    student_config = model_config(student_width, size, roi_sampling_ratio)
    images = [torch.rand(3, size, size) for _ in range(batch)]
    boxes = torch.tensor([[20.0, 30.0, 90.0, 110.0], [100.0, 40.0, 150.0, 80.0]]) * size / 192
    targets = [{"boxes": boxes, "labels": torch.tensor([1, 3])} for _ in images]
    result = measure_on(teacher_config, student_config, images, targets, repeats)
    return {**result, "batch": batch, "size": size}


def measure_on(
    teacher_config: dict,
    student_config: dict,
    images: list[torch.Tensor],
    targets: list[dict[str, torch.Tensor]],
    repeats: int = 15,
) -> dict[str, Any]:
    """Median times of the three steps on one given batch (``images`` ``[3, H, W]`` each, their
    ``targets``), teacher and student built from their ``model`` configs (random weights; the
    teacher with a feature quantizer, as Quantization Mimic has it).

    The three are timed in :data:`ROUNDS` interleaved rounds of ``repeats // ROUNDS`` (at least
    1) calls after 3 warm-up calls each; the median over rounds is kept. The caller sets the
    thread count.

    Returns:
        ``{"student_ms", "teacher_forward_ms", "distill_ms", "ratio", "target"}``.
    """
    torch.manual_seed(0)
    teacher = instantiate(teacher_config)
    student = instantiate(student_config).train()
    module = distill_module(teacher, teacher_config, instantiate(student_config)).train()
    student_opt = torch.optim.SGD(student.parameters(), lr=1e-3)
    distill_opt = module.configure_optimizers()["optimizer"]

    def student_step() -> None:
        student_opt.zero_grad()
        sum(student.losses(images, targets).values()).backward()
        student_opt.step()

    def teacher_forward() -> None:
        with torch.no_grad():
            prepared, _ = module.teacher.prepare(images)
            module.teacher.raw_features(prepared)

    def distill_step() -> None:
        distill_opt.zero_grad()
        sum(module.detection_losses(images, targets).values()).backward()
        distill_opt.step()

    # Interleave the three measurements so machine noise hits all of them alike.
    steps = {
        "student_ms": student_step,
        "teacher_forward_ms": teacher_forward,
        "distill_ms": distill_step,
    }
    samples: dict[str, list[float]] = {key: [] for key in steps}
    for _ in range(ROUNDS):
        for key, step in steps.items():
            samples[key].append(median_seconds(step, max(1, repeats // ROUNDS)))
    result = {key: 1000 * statistics.median(values) for key, values in samples.items()}
    ratio = result["distill_ms"] / (result["student_ms"] + result["teacher_forward_ms"])
    return {**result, "ratio": ratio, "target": TARGET_RATIO}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher-width", type=float, default=0.25)
    parser.add_argument("--student-width", type=float, default=1 / 16)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--roi-sampling-ratio", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = measure(
        args.teacher_width,
        args.student_width,
        args.size,
        args.batch,
        args.repeats,
        args.roi_sampling_ratio,
    )
    print(
        f"batch {args.batch} x {args.size}px, teacher width {args.teacher_width}, student "
        f"width {args.student_width:.4g}, {args.threads} threads"
    )
    names = {
        "student_ms": "student step",
        "teacher_forward_ms": "teacher forward (no grad)",
        "distill_ms": "distillation step",
    }
    for key, name in names.items():
        print(f"  {name:<28} {result[key]:8.1f} ms")
    ratio = result["ratio"]
    print(
        f"  distill / (student + teacher) = {ratio:.3f}  (target <= {TARGET_RATIO}: "
        f"{'PASS' if ratio <= TARGET_RATIO else 'MISS'})"
    )


if __name__ == "__main__":
    main()
