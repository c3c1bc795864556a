"""Images to check and calibrate an export on: a data split's, or random ones."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor


def data_images(datamodule: Any, split: str, count: int) -> Iterator[Tensor]:
    """The first ``count`` images ``[3, H, W]`` of a split's loader (train: shuffled, flipped)."""
    loader = getattr(datamodule, f"{split}_dataloader")()
    return itertools.islice((image for images, _ in loader for image in images), count)


def random_images(size: tuple[int, int], count: int, seed: int = 0) -> Iterator[Tensor]:
    """``count`` uniform random images; every second one is 3/4 as high, so that a check also
    covers the graph's resizing of images of another shape."""
    generator = torch.Generator().manual_seed(seed)
    height, width = size
    for index in range(count):
        rows = height if index % 2 == 0 else max(32, height * 3 // 4)
        yield torch.rand(3, rows, width, generator=generator)
