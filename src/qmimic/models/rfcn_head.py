"""R-FCN region head (Dai et al., NIPS 2016) assembled from torchvision parts.

A fully convolutional ``body`` runs once on the whole stride-16 feature map; 1x1 convolutions
turn its output into ``k x k`` position-sensitive score maps, ``num_classes * k * k`` for classes
and ``4 * k * k`` for class-agnostic box deltas; ``torchvision.ops.ps_roi_align`` reads bin
``(i, j)`` of each region from its own group of maps, and the ``k x k`` bins are averaged ("voting")
into one score per class and one delta per coordinate. Per-region cost is this pooling alone, so
the head stays cheap however many proposals there are.

Sampling, losses, the box coder and post-processing are torchvision's ``RoIHeads`` ones, shared
with :class:`~qmimic.models.fast_rcnn_head.FastRCNNHead`.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.ops import PSRoIAlign

from qmimic.models.fast_rcnn_head import FastRCNNHead


class PositionSensitivePredictor(nn.Module):
    """The position-sensitive score maps of R-FCN.

    Input: ``[B, C, H, W]``. Output: class maps ``[B, num_classes * k * k, H, W]`` and box maps
    ``[B, 4 * k * k, H, W]`` with ``k = grid_size``; channel ``g * k * k + i * k + j`` holds bin
    ``(i, j)`` of group ``g`` (the layout ``ps_roi_align`` reads). Their channel counts follow the
    classes and the grid, not the network width.
    """

    def __init__(self, in_channels: int, num_classes: int, grid_size: int = 7):
        super().__init__()
        bins = grid_size * grid_size
        self.class_maps = nn.Conv2d(in_channels, num_classes * bins, kernel_size=1)
        self.box_maps = nn.Conv2d(in_channels, 4 * bins, kernel_size=1)
        self.grid_size = grid_size

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.class_maps(x), self.box_maps(x)


def position_sensitive_pool(grid_size: int, stride: int, sampling_ratio: int = 2) -> PSRoIAlign:
    """``ps_roi_align`` with a ``grid_size x grid_size`` grid over a map of the given stride."""
    return PSRoIAlign(grid_size, spatial_scale=1.0 / stride, sampling_ratio=sampling_ratio)


class RFCNHead(FastRCNNHead):
    """R-FCN second stage: ``box_head`` is the whole-map body, ``box_predictor`` the score maps.

    Constructed like torchvision's ``RoIHeads``: ``box_roi_pool`` is a ``PSRoIAlign`` (see
    :func:`position_sensitive_pool`), ``box_head`` maps the feature map ``[B, C, H, W]`` to
    ``[B, C', H, W]`` (``nn.Identity`` to read the trunk's map directly) and ``box_predictor`` is a
    :class:`PositionSensitivePredictor`. ``losses`` and ``detect`` behave as in
    :class:`~qmimic.models.fast_rcnn_head.FastRCNNHead`.
    """

    def pool(
        self, features: Tensor, boxes: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> None:
        """R-FCN pools its score maps, not the feature map: nothing to share."""
        return None

    def scores(
        self,
        features: Tensor,
        boxes: list[Tensor],
        image_sizes: list[tuple[int, int]],
        pooled: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Voted class logits ``[R, num_classes]`` and deltas ``[R, num_classes * 4]``.

        The class-agnostic deltas are repeated for every class, so that torchvision's
        per-class loss and decoding apply unchanged (the loss reads one copy per region).
        """
        class_maps, box_maps = self.box_predictor(self.box_head(features))
        class_logits = self.box_roi_pool(class_maps, boxes).mean(dim=(2, 3))
        deltas = self.box_roi_pool(box_maps, boxes).mean(dim=(2, 3))
        return class_logits, deltas.repeat(1, class_logits.shape[1])
