"""The two-stage detector every framework in qmimic shares, with an explicit call per stage.

Tensor contract (all calls):
- images: a list of ``[3, H_i, W_i]`` float tensors in [0, 1], any sizes;
- boxes: float ``[N, 4]`` xyxy in absolute pixels of the frame named in each docstring;
- labels: int64 ``[N]`` with 0 = background, so real classes are ``1 .. num_classes - 1``.

Unlike torchvision's ``GeneralizedRCNN``, what a call returns never depends on ``self.training``:
``losses`` always returns losses, ``predict`` always returns detections. The module mode only sets
BatchNorm behaviour, multi-scale resizing and the RPN proposal budget. Distillation uses the
stage calls (``prepare`` -> ``raw_features`` -> ``apply_neck`` -> ``proposals`` ->
``roi_losses``) to share one forward pass between detection losses and the mimic loss.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor, nn
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from qmimic.models.fast_rcnn_head import TrainingRegions
from qmimic.models.rpn import ProposalNetwork

Targets = list[dict[str, Tensor]]


class RegionHead(Protocol):
    """What a second stage (Fast R-CNN, R-FCN) offers the detector."""

    def losses(
        self,
        features: Tensor,
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
        targets: Targets,
    ) -> dict[str, Tensor]: ...

    def losses_and_regions(
        self,
        features: Tensor,
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
        targets: Targets,
    ) -> tuple[dict[str, Tensor], TrainingRegions]: ...

    def detect(
        self, features: Tensor, proposals: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> Targets: ...


class TwoStageDetector(nn.Module):
    """Trunk -> neck -> RPN -> region head, behind one shared input transform.

    Args:
        transform: resizes, normalises and batches images (and scales target boxes alike).
        trunk: maps normalised images ``[B, 3, H, W]`` to the stride-16 feature map
            ``[B, C, H/16, W/16]``; exposes ``out_channels``.
        rpn: proposals and RPN losses from the feature map.
        roi_heads: the second stage (see :class:`RegionHead`).
        neck: applied to the trunk output before RPN and region head; ``nn.Identity`` by
            default. Quantization replaces it with a feature quantizer, so the map that feeds both
            heads is the map that is quantized and mimicked.
    """

    def __init__(
        self,
        transform: GeneralizedRCNNTransform,
        trunk: nn.Module,
        rpn: ProposalNetwork,
        roi_heads: nn.Module,
        neck: nn.Module | None = None,
    ):
        super().__init__()
        self.transform = transform
        self.trunk = trunk
        self.neck = neck if neck is not None else nn.Identity()
        self.rpn = rpn
        self.roi_heads = roi_heads

    @property
    def feature_channels(self) -> int:
        """Channels ``C`` of the feature map returned by :meth:`features`."""
        return self.trunk.out_channels

    @property
    def stride(self) -> int:
        """Input pixels per feature-map cell: a box ``b`` in resized-image pixels covers
        ``b / stride`` on the map."""
        return int(self.trunk.stride)

    @property
    def roi_sampling_ratio(self) -> int:
        """Sampling points per bin with which the region head pools its regions."""
        return int(self.roi_heads.box_roi_pool.sampling_ratio)

    @property
    def feature_step(self) -> float | None:
        """The quantization step of the feature map when the neck quantizes it (see
        :mod:`qmimic.quant`), else ``None``."""
        step = getattr(self.neck, "step", None)
        return None if step is None else float(step)

    def prepare(
        self, images: list[Tensor], targets: Targets | None = None
    ) -> tuple[ImageList, Targets | None]:
        """Resize, normalise and pad ``images``; scale target boxes to the resized frame."""
        return self.transform(images, targets)

    def raw_features(self, images: ImageList) -> Tensor:
        """The trunk's map before the neck: ``[B, C, H/stride, W/stride]`` (float even where the
        neck quantizes)."""
        return self.trunk(images.tensors)

    def apply_neck(self, raw_features: Tensor) -> Tensor:
        """:meth:`features` from :meth:`raw_features` (the neck, e.g. a feature quantizer)."""
        return self.neck(raw_features)

    def features(self, images: ImageList) -> Tensor:
        """The map that feeds RPN and region head: ``[B, C, H/stride, W/stride]``, neck applied."""
        return self.apply_neck(self.raw_features(images))

    def proposals(
        self, images: ImageList, features: Tensor, targets: Targets | None = None
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """RPN proposals per image (resized frame), plus RPN losses when ``targets`` are given."""
        return self.rpn.propose(images, features, targets)

    def roi_losses(
        self, images: ImageList, features: Tensor, proposals: list[Tensor], targets: Targets
    ) -> dict[str, Tensor]:
        """Region-head losses for ``proposals`` against ``targets`` (resized frame)."""
        return self.roi_heads.losses(features, proposals, images.image_sizes, targets)

    def roi_losses_and_regions(
        self, images: ImageList, features: Tensor, proposals: list[Tensor], targets: Targets
    ) -> tuple[dict[str, Tensor], TrainingRegions]:
        """:meth:`roi_losses`, plus the regions the head sampled and pooled to compute them
        (distillation mimics on those regions without reading the student's map twice)."""
        return self.roi_heads.losses_and_regions(features, proposals, images.image_sizes, targets)

    def losses(self, images: list[Tensor], targets: Targets) -> dict[str, Tensor]:
        """All detection losses for one batch.

        Returns ``loss_objectness``, ``loss_rpn_box_reg`` (RPN) and ``loss_classifier``,
        ``loss_box_reg`` (region head), each a 0-d tensor.
        """
        batch, resized_targets = self.prepare(images, targets)
        features = self.features(batch)
        proposals, rpn_losses = self.proposals(batch, features, resized_targets)
        return rpn_losses | self.roi_losses(batch, features, proposals, resized_targets)

    def predict(self, images: list[Tensor]) -> Targets:
        """Detections per image: ``boxes`` [D, 4] in input-image pixels, ``scores``, ``labels``."""
        batch, _ = self.prepare(images)
        features = self.features(batch)
        proposals, _ = self.proposals(batch, features)
        detections = self.roi_heads.detect(features, proposals, batch.image_sizes)
        original_sizes = [(img.shape[-2], img.shape[-1]) for img in images]
        return self.transform.postprocess(detections, batch.image_sizes, original_sizes)

    def forward(
        self, images: list[Tensor], targets: Targets | None = None
    ) -> dict[str, Tensor] | Targets:
        """``losses(images, targets)`` when targets are given, else ``predict(images)``."""
        if targets is not None:
            return self.losses(images, targets)
        return self.predict(images)
