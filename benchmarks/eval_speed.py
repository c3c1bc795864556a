"""Speed of qmimic's VOCMeanAP against torchmetrics' MeanAveragePrecision.

Builds a deterministic synthetic case the size of PASCAL VOC 2007 test (4952 images, 20
classes, about 12k objects, 100 detections per image), feeds the same batches to each metric
and prints update / compute / total seconds, the speed-ups, and whether the targets hold:
VOCMeanAP total <= 3 s and >= 5x faster than torchmetrics (its faster backend). It also says
which torchmetrics COCO backend (pycocotools or faster_coco_eval) is faster on this input.

The metrics do not compute the same quantity (VOC AP at IoU 0.5 vs COCO AP at 0.50:0.95);
this compares cost only.

:func:`measure` returns the totals of qmimic's metric and of one torchmetrics backend.

Usage: python benchmarks/eval_speed.py [--images N] [--batch B] [--threads T]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.detection import MeanAveragePrecision

from qmimic.metrics import VOCMeanAP

VOC07_TEST_IMAGES = 4952
NUM_CLASSES = 20
DETS_PER_IMAGE = 100
TIME_TARGET_S = 3.0
SPEEDUP_TARGET = 5.0
BACKENDS = ("pycocotools", "faster_coco_eval")

Batch = tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]


def synthetic_voc(n_images: int, seed: int = 0) -> list[Batch]:
    """One (preds, target) pair per image, VOC07-test-like statistics, fully seeded.

    About 2.4 objects per image (12k for 4952 images), 10% difficult; each object gets 0 to 3
    jittered detections of its class with high-ish scores, the rest of the 100 detections are
    background boxes with random classes and lower scores.
    """
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n_images):
        w, h = rng.integers(300, 501), rng.integers(300, 501)
        n_gt = 1 + rng.poisson(1.43)
        wh = rng.uniform(20, 0.6 * min(w, h), size=(n_gt, 2))
        xy = rng.uniform(0, 1, size=(n_gt, 2)) * (np.array([w, h]) - wh)
        gt_boxes = np.round(np.concatenate([xy, xy + wh], 1))
        gt_labels = rng.integers(0, NUM_CLASSES, n_gt)
        difficult = rng.random(n_gt) < 0.1

        per_obj = rng.integers(0, 4, n_gt)
        src = np.repeat(np.arange(n_gt), per_obj)[:DETS_PER_IMAGE]
        jitter = rng.normal(0, 0.08, size=(len(src), 4)) * np.tile(wh[src], 2)
        hit_boxes = gt_boxes[src] + jitter
        hit_scores = rng.beta(5, 2, len(src))
        n_bg = DETS_PER_IMAGE - len(src)
        bg_wh = rng.uniform(10, 0.6 * min(w, h), size=(n_bg, 2))
        bg_xy = rng.uniform(0, 1, size=(n_bg, 2)) * (np.array([w, h]) - bg_wh)
        bg_boxes = np.concatenate([bg_xy, bg_xy + bg_wh], 1)

        det_boxes = np.concatenate([hit_boxes, bg_boxes]).clip(0, [w, h, w, h])
        scores = np.concatenate([hit_scores, rng.beta(1.2, 6, n_bg)])
        labels = np.concatenate([gt_labels[src], rng.integers(0, NUM_CLASSES, n_bg)])
        images.append(
            (
                {
                    "boxes": torch.tensor(det_boxes, dtype=torch.float32),
                    "scores": torch.tensor(scores, dtype=torch.float32),
                    "labels": torch.tensor(labels, dtype=torch.long),
                },
                {
                    "boxes": torch.tensor(gt_boxes, dtype=torch.float32),
                    "labels": torch.tensor(gt_labels, dtype=torch.long),
                    "difficult": torch.tensor(difficult),
                },
            )
        )
    return images


def batches(images: list[Batch], batch_size: int) -> list[Batch]:
    """Group per-image pairs into (preds, target) lists, as an evaluation loop would."""
    out = []
    for i in range(0, len(images), batch_size):
        chunk = images[i : i + batch_size]
        out.append(([p for p, _ in chunk], [t for _, t in chunk]))
    return out


def time_metric(make: Callable[[], Metric], data: list[Batch]) -> tuple[float, float, dict]:
    """Seconds spent in all update calls and in compute, and the computed value."""
    metric = make()
    start = time.perf_counter()
    for preds, target in data:
        metric.update(preds, target)
    mid = time.perf_counter()
    value = metric.compute()
    end = time.perf_counter()
    return mid - start, end - mid, value


def time_qmimic(data: list[Batch], repeats: int) -> tuple[float, float, dict]:
    """:func:`time_metric` of VOCMeanAP (VOC07 11-point), the fastest of ``repeats`` runs."""
    runs = [time_metric(lambda: VOCMeanAP(use_07_metric=True), data) for _ in range(repeats)]
    return min(runs, key=lambda run: run[0] + run[1])


def time_torchmetrics(data: list[Batch], backend: str) -> tuple[float, float, dict]:
    """:func:`time_metric` of torchmetrics' bbox MeanAveragePrecision on ``backend``."""
    return time_metric(lambda: MeanAveragePrecision(iou_type="bbox", backend=backend), data)


def measure(
    n_images: int, batch: int = 16, backend: str = "faster_coco_eval", repeats: int = 3
) -> dict[str, Any]:
    """Seconds both metrics spend on the same :func:`synthetic_voc` case of ``n_images``.

    Each total is all ``update`` calls (``batch`` images each) plus ``compute``; qmimic's
    VOCMeanAP keeps the fastest of ``repeats`` runs, torchmetrics' MeanAveragePrecision on
    ``backend`` runs once. The caller sets the thread count.

    Returns:
        ``{"images": int, "qmimic_s": float, "torchmetrics_s": float, "speedup": float}`` with
        ``speedup = torchmetrics_s / qmimic_s``.
    """
    data = batches(synthetic_voc(n_images), batch)
    ours = sum(time_qmimic(data, repeats)[:2])
    theirs = sum(time_torchmetrics(data, backend)[:2])
    speedup = theirs / ours
    return {"images": n_images, "qmimic_s": ours, "torchmetrics_s": theirs, "speedup": speedup}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=VOC07_TEST_IMAGES)
    parser.add_argument("--batch", type=int, default=16, help="images per update call")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="VOCMeanAP runs (best kept)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    images = synthetic_voc(args.images)
    data = batches(images, args.batch)
    n_gt = sum(int(t["boxes"].shape[0]) for _, t in images)
    n_det = sum(int(p["boxes"].shape[0]) for p, _ in images)
    full = args.images == VOC07_TEST_IMAGES
    print(
        f"case: {args.images} images ({'VOC07-test size' if full else 'REDUCED size'}), "
        f"{NUM_CLASSES} classes, {n_gt} objects, {n_det} detections, "
        f"batches of {args.batch}, {torch.get_num_threads()} threads"
    )
    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, 1-min load average {load:.1f} before timing")

    rows = []
    upd, comp, value = time_qmimic(data, args.repeats)
    rows.append(("qmimic VOCMeanAP (07)", upd, comp, f"mAP@0.5={float(value['map']):.4f}"))
    for backend in BACKENDS:
        upd, comp, value = time_torchmetrics(data, backend)
        rows.append((f"torchmetrics MAP [{backend}]", upd, comp, f"map={float(value['map']):.4f}"))

    ours = rows[0][1] + rows[0][2]
    print(
        f"\n{'metric':34s} {'update s':>9s} {'compute s':>10s} {'total s':>8s} "
        f"{'vs qmimic':>9s}  value"
    )
    for name, upd, comp, note in rows:
        total = upd + comp
        print(f"{name:34s} {upd:9.3f} {comp:10.3f} {total:8.3f} {total / ours:8.1f}x  {note}")

    tm = {name: upd + comp for name, upd, comp, _ in rows[1:]}
    fastest_tm = min(tm, key=tm.get)
    speedup = tm[fastest_tm] / ours
    print(
        f"\nfaster torchmetrics backend: {fastest_tm.split('[')[1].rstrip(']')} "
        f"({tm[fastest_tm]:.2f} s vs {max(tm.values()):.2f} s)"
    )
    print(
        f"target total <= {TIME_TARGET_S:.0f} s: {'PASS' if ours <= TIME_TARGET_S else 'FAIL'} "
        f"({ours:.3f} s, best of {args.repeats})"
    )
    print(
        f"target >= {SPEEDUP_TARGET:.0f}x faster than torchmetrics (faster backend): "
        f"{'PASS' if speedup >= SPEEDUP_TARGET else 'FAIL'} ({speedup:.1f}x)"
    )
    if not full:
        print("note: reduced case; the targets are stated for the full 4952-image case")


if __name__ == "__main__":
    main()
