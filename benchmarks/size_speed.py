"""Latency over input sizes: the teacher and the student beside torchvision's mobile detectors.

For each input size (shorter x longer side; by default 320, 480 and 600 on the short side at
600x1000's aspect), in one process, the median CPU time of one-image ``predict`` calls on a
seeded noise image of that size, after warm-up:

- the full-width ResNet-18 teacher and the ResNet18-1-16 student, built from the VOC configs
  (the paper's test budgets: 6,000 proposals before NMS, 300 after) with random seeded weights
  and prepared as ``qmimic.predict`` runs them (``for_inference``), their input transform set
  to keep the image at its size;
- torchvision's ``fasterrcnn_mobilenet_v3_large_fpn`` and ``fasterrcnn_mobilenet_v3_large_320_fpn``
  (21 classes, random weights, eval mode, their own proposal budgets), their transforms set
  to the same size, so that every model sees the same pixels.

:func:`measure` returns the ``sizes`` section of ``bench/results.json``.

    python benchmarks/size_speed.py [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
from model_speed import build, median_seconds
from torch import nn
from torchvision.models import detection

from qmimic.deploy.memory import keep_freed_memory
from qmimic.models.inference import for_inference

SIZES = ((320, 533), (480, 800), (600, 1000))
QMIMIC_MODELS = {
    "ResNet-18 teacher (full width)": 1.0,
    "ResNet18-1-16 student": 0.0625,
}
TORCHVISION_MODELS = {
    "torchvision fasterrcnn_mobilenet_v3_large_fpn": detection.fasterrcnn_mobilenet_v3_large_fpn,
    "torchvision fasterrcnn_mobilenet_v3_large_320_fpn": (
        detection.fasterrcnn_mobilenet_v3_large_320_fpn
    ),
}


def qmimic_model(width: float, size: tuple[int, int], base: Sequence[str]) -> nn.Module:
    """A qmimic detector of ``width`` whose transform keeps a ``size`` image as it is."""
    overrides = [*base, f"model.width={width}", f"model.min_size={size[0]}"]
    detector, _ = build([*overrides, f"model.max_size={size[1]}"])
    return for_inference(detector)


def torchvision_model(name: str, size: tuple[int, int]) -> nn.Module:
    """A torchvision mobile detector (random weights, nothing downloaded) resizing to ``size``."""
    torch.manual_seed(0)
    model = TORCHVISION_MODELS[name](weights=None, weights_backbone=None, num_classes=21)
    model.transform.min_size, model.transform.max_size = (size[0],), size[1]
    return model.eval()


def measure(
    repeats: int = 5,
    sizes: Sequence[tuple[int, int]] = SIZES,
    base: Sequence[str] = ("data=voc", "model.pretrained=false"),
    torchvision: bool = True,
) -> dict[str, Any]:
    """``{"sizes": [[H, W], ...], "rows": [{"model", "ms": {"HxW": ms}}], "threads",
    "load_average"}``, plus ``teacher_over_student`` by size. ``base``: the qmimic models'
    train-config overrides (a test's smaller budgets); ``torchvision=False`` leaves those out."""
    load = os.getloadavg()[0]
    builders = {
        name: (lambda s, w=w: qmimic_model(w, s, base)) for name, w in QMIMIC_MODELS.items()
    }
    if torchvision:
        builders.update(
            {name: (lambda s, n=name: torchvision_model(n, s)) for name in TORCHVISION_MODELS}
        )
    rows = {name: {} for name in builders}
    for size in sizes:
        key = f"{size[0]}x{size[1]}"
        image = torch.rand(3, *size, generator=torch.Generator().manual_seed(0))
        for name, make in builders.items():
            model = make(size)
            run = model.predict if hasattr(model, "predict") else model
            with torch.inference_mode():
                ms = 1000 * median_seconds(partial(run, [image]), repeats, warmup=2)
            rows[name][key] = ms
            print(f"  {name} @ {key}: {ms:.1f} ms", flush=True)
    teacher, student = list(QMIMIC_MODELS)
    return {
        "sizes": [list(s) for s in sizes],
        "rows": [{"model": name, "ms": ms} for name, ms in rows.items()],
        "teacher_over_student": {k: rows[teacher][k] / rows[student][k] for k in rows[student]},
        "threads": torch.get_num_threads(),
        "load_average": load,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as qmimic.predict and bench.py run models
    from report import sizes_table

    print(sizes_table({"sizes": measure(args.repeats)}))


if __name__ == "__main__":
    main()
