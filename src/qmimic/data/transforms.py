"""Train-time augmentation on ``(image, target)`` pairs.

Resizing (single- or multi-scale) belongs to the detector's input transform, so that teacher and
student always see the same resized input; only flips happen here.
"""

from __future__ import annotations

import torch
from torch import Tensor


class RandomHorizontalFlip:
    """Flip image ``[3, H, W]`` and its xyxy boxes with probability ``p``.

    With ``offset=1`` (default) boxes use the VOC pixel-index convention (inclusive, 1-based),
    so a box spanning columns ``x1..x2`` spans ``W + 1 - x2 .. W + 1 - x1`` after the flip;
    with ``offset=0`` they are continuous coordinates (WIDER FACE, ``x2 = x1 + w``) and span
    ``W - x2 .. W - x1``.
    """

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None, offset: int = 1):
        self.p = p
        self.generator = generator
        self.offset = offset

    def __call__(self, image: Tensor, target: dict) -> tuple[Tensor, dict]:
        if self.p <= 0 or torch.rand((), generator=self.generator).item() >= self.p:
            return image, target
        width = image.shape[-1]
        boxes = target["boxes"].clone()
        boxes[:, [0, 2]] = width + self.offset - target["boxes"][:, [2, 0]]
        return image.flip(-1), {**target, "boxes": boxes}
