"""Detection metrics shared by the LightningModules."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.detection import MeanAveragePrecision


def build_detection_metrics(backend: str = "faster_coco_eval") -> MetricCollection:
    """COCO-style mAP (``map``, ``map_50``, ...) over boxes in xyxy pixels."""
    return MetricCollection({"coco": MeanAveragePrecision(box_format="xyxy", backend=backend)})


def metric_targets(targets: list[dict]) -> list[dict[str, Tensor]]:
    """Ground truth as the metrics take it: difficult objects become COCO "crowd" regions,
    which COCO evaluation ignores (neither positives nor false positives), as VOC does."""
    out = []
    for t in targets:
        difficult = t.get("difficult", torch.zeros(len(t["labels"]), dtype=torch.bool))
        out.append({"boxes": t["boxes"], "labels": t["labels"], "iscrowd": difficult.long()})
    return out


def scalar_metrics(values: dict[str, Tensor], prefix: str) -> dict[str, float]:
    """``{prefix/name: float}`` for the 0-d entries of a metric result (per-class tensors and
    class lists are left out)."""
    flat: dict[str, float] = {}
    for name, value in values.items():
        key = name.removeprefix("coco_")
        if key.endswith("_per_class") or key == "classes":
            continue
        if isinstance(value, Tensor) and value.numel() == 1 and value.is_floating_point():
            flat[f"{prefix}/{key}"] = float(value)
    return flat
