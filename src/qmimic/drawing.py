"""Detections as records (JSON-ready) and drawn onto their image."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchvision.utils import draw_bounding_boxes

# One colour per class (cycled), so that a class keeps its colour across images.
COLOURS = ("red", "lime", "blue", "yellow", "magenta", "cyan", "orange", "white", "purple", "pink")


def class_name(label: int, class_names: tuple[str, ...] | None) -> str:
    """The name of ``label`` (1 = first class), or ``class <label>`` without names."""
    if class_names is not None and 1 <= label <= len(class_names):
        return class_names[label - 1]
    return f"class {label}"


def detection_records(
    detections: dict[str, Tensor], class_names: tuple[str, ...] | None
) -> list[dict[str, Any]]:
    """JSON-ready ``{label, class_name, score, box}`` per detection, in the given order."""
    return [
        {
            "label": int(label),
            "class_name": class_name(int(label), class_names),
            "score": round(float(score), 5),
            "box": [round(float(v), 2) for v in box],
        }
        for box, score, label in zip(
            detections["boxes"], detections["scores"], detections["labels"], strict=True
        )
    ]


def to_pixels(image: Tensor) -> Tensor:
    """float ``[3, H, W]`` in [0, 1] -> uint8 ``[3, H, W]``."""
    return image.mul(255).round_().to(torch.uint8)


def draw(image: Tensor, records: list[dict[str, Any]]) -> Tensor:
    """``image`` (float ``[3, H, W]`` in [0, 1]) as uint8 with labelled boxes drawn."""
    pixels = to_pixels(image)
    if not records:
        return pixels
    return draw_bounding_boxes(
        pixels,
        torch.tensor([r["box"] for r in records]).reshape(-1, 4),
        labels=[f"{r['class_name']} {r['score']:.2f}" for r in records],
        colors=[COLOURS[(r["label"] - 1) % len(COLOURS)] for r in records],
        width=2,
    )
