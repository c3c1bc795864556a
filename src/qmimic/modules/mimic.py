"""The mimic loss on regions of two feature maps (Li et al., CVPR 2017; Wei et al., ECCV 2018)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F
from torchvision.ops import roi_align

REGION_READS = ("roi_align", "native")
# Region features: one ``[R, C, S, S]`` tensor (a fixed grid) or one ``[C, h, w]`` crop per box.
Regions = Tensor | list[Tensor]


def read_regions(
    features: Tensor, boxes: list[Tensor], *, stride: int, output_size: int, sampling_ratio: int
) -> Tensor:
    """Region features by RoIAlign: ``[sum R_i, C, S, S]`` for per-image boxes (xyxy, pixels of
    the resized frame) on a stride-``stride`` map ``[B, C, H, W]``."""
    return roi_align(
        features, boxes, output_size=output_size, spatial_scale=1.0 / stride,
        sampling_ratio=sampling_ratio, aligned=True,
    )  # fmt: skip


def native_crops(features: Tensor, boxes: list[Tensor], *, stride: int) -> list[Tensor]:
    """Region features without resampling: the feature cells each box covers, one ``[C, h, w]``
    tensor per box. Sizes differ, hence a list (written by hand: no torchvision op crops
    variable-size windows)."""
    crops = []
    height, width = features.shape[-2:]
    for image, image_boxes in enumerate(boxes):
        cells = (image_boxes / stride).round().long()
        for x0, y0, x1, y1 in cells.tolist():
            x0, y0 = min(max(x0, 0), width - 1), min(max(y0, 0), height - 1)
            x1, y1 = max(min(x1, width), x0 + 1), max(min(y1, height), y0 + 1)
            crops.append(features[image, :, y0:y1, x0:x1])
    return crops


def mimic_loss(
    teacher_regions: Regions,
    student_regions: Regions,
    *,
    normalize: bool = True,
) -> Tensor:
    """``L_m = 1 / (2N) * sum_i || t_i - s_i ||^2`` over N regions.

    With ``normalize`` each region's squared error is divided by its number of elements
    (Li et al. normalise each region by its size), so the loss scale does not grow with the
    channel count or the grid size.
    """
    count = len(teacher_regions)
    if count == 0:
        return (
            student_regions.sum() * 0.0 if isinstance(student_regions, Tensor) else torch.zeros(())
        )
    if isinstance(teacher_regions, Tensor):
        # Equal-size regions: sum_i mean_i / (2N) is the mean over all elements / 2, which
        # mse_loss computes in one pass.
        if normalize:
            return F.mse_loss(student_regions, teacher_regions) / 2
        return F.mse_loss(student_regions, teacher_regions, reduction="sum") / (2 * count)
    per_region = torch.stack([
        (t - s).pow(2).mean() if normalize else (t - s).pow(2).sum()
        for t, s in zip(teacher_regions, student_regions, strict=True)
    ])  # fmt: skip
    return per_region.sum() / (2 * count)
