"""RoIAlign for CPU inference as one weighted gather over a channels-last feature map.

torchvision's CPU ``roi_align`` loops over regions, channels and samples one float at a time on
one thread (pytorch/vision issues 4935 and 6619 are still open); for the ResNet18-1-16 student
at the paper's budgets (300 regions, 14 x 14 bins, 2 x 2 samples per bin) it was about a third of
the whole detector's time. The same sums are written here as ``embedding_bag`` over the map
stored ``[B * H * W, C]``: one bag per output bin, holding the 4 bilinear taps of each of its
samples with their weights, so every tap reads ``C`` contiguous floats and ATen's bag kernel
runs vectorised over channels and in parallel over bins.

Same arithmetic as ``torchvision.ops.roi_align(..., aligned=True)`` with a fixed sampling grid
(``sampling_ratio > 0``): sample ``i`` of bin ``p`` along an axis sits at
``start + p * bin + (i + 0.5) * bin / grid`` (``start = x1 * scale - 0.5``, ``bin = (x2 - x1) *
scale / pooled``); a sample outside ``[-1, length]`` contributes nothing; one below 0 reads cell
0; one at or past the last cell reads the last cell only; the rest interpolate between
``floor(pos)`` and the next cell. Both the bounds test and the weights factor into a y part and
an x part, so they are computed per axis (``[R, pooled * grid]``) and multiplied out. The bin's
value is the mean over its ``grid * grid`` samples. Results equal torchvision's within float
rounding (the sums run in another order), not bit for bit; forward only (no autograd), so
training keeps torchvision's kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _axis_taps(
    start: Tensor, extent: Tensor, pooled: int, grid: int, length: int
) -> tuple[Tensor, Tensor]:
    """The two bilinear taps of every sample along one axis.

    ``start``, ``extent`` ``[R]`` (feature-map units) -> cell indices int64 and weights, both
    ``[R, pooled, 2 * grid]``: for bin ``p``, the lower and upper cell of each of its ``grid``
    samples, weights zero for samples outside the map.
    """
    dtype = start.dtype
    bin_size = (extent / pooled)[:, None]
    bins = torch.arange(pooled, dtype=dtype, device=start.device).repeat_interleave(grid)
    samples = torch.arange(grid, dtype=dtype, device=start.device).repeat(pooled) + 0.5
    position = start[:, None] + bins * bin_size + samples * bin_size / grid  # [R, P * g]
    inside = ((position >= -1.0) & (position <= length)).to(dtype)
    position = position.clamp(min=0)
    low = position.to(torch.int64)  # floor, as position >= 0
    at_end = low >= length - 1
    low = low.clamp(max=length - 1)
    high = torch.where(at_end, low, low + 1)
    fraction = torch.where(at_end, torch.zeros_like(position), position - low.to(dtype))
    cells = torch.stack([low, high], dim=-1)  # [R, P * g, 2]
    weights = torch.stack([1 - fraction, fraction], dim=-1) * inside[..., None]
    rows = len(start)
    return cells.view(rows, pooled, 2 * grid), weights.view(rows, pooled, 2 * grid)


def gather_roi_align(
    features: Tensor,
    boxes: list[Tensor],
    output_size: int,
    spatial_scale: float,
    sampling_ratio: int,
) -> Tensor:
    """``torchvision.ops.roi_align(features, boxes, output_size, spatial_scale, sampling_ratio,
    aligned=True)`` for a fixed sampling grid, without autograd.

    Args:
        features: ``[B, C, H, W]``.
        boxes: per image ``[R_i, 4]`` xyxy in input pixels (``spatial_scale`` maps them onto
            the map).
        output_size: ``S``, the bins per side.
        spatial_scale: feature-map cells per input pixel (``1 / stride``).
        sampling_ratio: samples per bin side, ``> 0``.

    Returns:
        ``[sum R_i, C, S, S]`` (stored channels-last), regions in the order of ``boxes``.
    """
    if sampling_ratio <= 0:
        raise ValueError(f"gather_roi_align needs a fixed sampling_ratio > 0, got {sampling_ratio}")
    batch, channels, height, width = features.shape
    regions = torch.cat(boxes) * spatial_scale - 0.5  # aligned: half-pixel offset
    images = torch.cat([
        torch.full((len(b),), i, dtype=torch.int64, device=features.device)
        for i, b in enumerate(boxes)
    ])  # fmt: skip
    count = len(regions)
    y_cells, y_weights = _axis_taps(
        regions[:, 1], regions[:, 3] - regions[:, 1], output_size, sampling_ratio, height
    )
    x_cells, x_weights = _axis_taps(
        regions[:, 0], regions[:, 2] - regions[:, 0], output_size, sampling_ratio, width
    )
    # int32 cell numbers (embedding_bag takes them) halve the bytes of the largest tensors
    y_cells = (y_cells * width + (images * height * width)[:, None, None]).to(torch.int32)
    x_cells = x_cells.to(torch.int32)
    y_weights = y_weights * (1.0 / (sampling_ratio * sampling_ratio))  # the mean over samples
    # [R, S (y bins), S (x bins), 2g (y taps) x 2g (x taps)]: one bag per bin. Each axis is
    # first spread over the bag's (y tap, x tap) pairs, [R, S, 4g^2], so that the sum and the
    # product run over contiguous rows of 4g^2 instead of broadcasting 2g-long ones.
    axis_taps = 2 * sampling_ratio
    per_bag = axis_taps * axis_taps

    def spread_y(tensor: Tensor) -> Tensor:
        return tensor[..., None].expand(-1, -1, -1, axis_taps).reshape(count, output_size, per_bag)

    def spread_x(tensor: Tensor) -> Tensor:
        return tensor[:, :, None].expand(-1, -1, axis_taps, -1).reshape(count, output_size, per_bag)

    taps = spread_y(y_cells)[:, :, None] + spread_x(x_cells)[:, None]
    weights = spread_y(y_weights)[:, :, None] * spread_x(x_weights)[:, None]
    table = features.permute(0, 2, 3, 1).contiguous().view(batch * height * width, channels)
    pooled = F.embedding_bag(
        taps.view(-1, per_bag), table, mode="sum", per_sample_weights=weights.view(-1, per_bag)
    )
    # [R, C, S, S] in channels-last memory order, which the convolutions after it read as is
    return pooled.view(count, output_size, output_size, channels).permute(0, 3, 1, 2)
