"""Fast R-CNN region head over one feature map of known stride."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss
from torchvision.ops import boxes as box_ops
from torchvision.ops import roi_align

from qmimic.models.gather_roi_align import gather_roi_align
from qmimic.models.proposal_nms import top_class_nms


class SingleMapRoIAlign(nn.Module):
    """RoIAlign on a single feature map of known stride.

    Called as torchvision's ``MultiScaleRoIAlign`` is: ``(features [B, C, H, W], boxes: list of
    [R_i, 4] xyxy image pixels, image_sizes)`` -> ``[sum R_i, C, S, S]``.

    ``gather_on_cpu`` (set by :func:`qmimic.models.inference.for_inference`) pools CPU maps that
    need no gradient with :func:`~qmimic.models.gather_roi_align.gather_roi_align`, equal within
    float rounding and several times faster there; training, CUDA and traced graphs (the ONNX
    export's ``RoiAlign``) keep torchvision's ``roi_align``.
    """

    def __init__(self, output_size: int, stride: int, sampling_ratio: int = 2):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = 1.0 / stride
        self.sampling_ratio = sampling_ratio
        self.gather_on_cpu = False

    def _gathers(self, features: Tensor) -> bool:
        return (
            self.gather_on_cpu
            and self.sampling_ratio > 0
            and features.device.type == "cpu"
            and not (torch.is_grad_enabled() and features.requires_grad)
            and not (torch.jit.is_scripting() or torch.jit.is_tracing())
        )

    def forward(
        self, features: Tensor, boxes: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> Tensor:
        if self._gathers(features):
            return gather_roi_align(
                features, boxes, self.output_size, self.spatial_scale, self.sampling_ratio
            )
        return roi_align(
            features,
            boxes,
            output_size=self.output_size,
            spatial_scale=self.spatial_scale,
            sampling_ratio=self.sampling_ratio,
            aligned=True,
        )


@dataclass
class TrainingRegions:
    """The regions a head trained on in one step, for losses that look at the same regions.

    Attributes:
        boxes: per image ``[R_i, 4]`` xyxy, resized-image pixels: the sampled proposals, ground
            truth included, in the order of ``pooled``.
        pooled: ``[sum R_i, C, S, S]`` read from the feature map by the head's own RoIAlign (with
            autograd), or ``None`` for heads that pool other maps (R-FCN pools score maps).
    """

    boxes: list[Tensor]
    pooled: Tensor | None


class FastRCNNHead(RoIHeads):
    """torchvision's ``RoIHeads`` (box branch only) with explicit ``losses`` and ``detect``.

    Both calls take the feature map ``[B, C, H/16, W/16]``, proposals (per image ``[P, 4]``
    xyxy in resized-image pixels) and the resized image sizes; neither reads ``self.training``.
    Subclasses change how regions are scored by overriding :meth:`scores`; sampling, losses, the
    box coder and post-processing stay torchvision's.
    """

    def pool(
        self, features: Tensor, boxes: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> Tensor | None:
        """Region features ``[R, C, S, S]`` read from the feature map, ``R`` = all boxes in order;
        ``None`` for heads that read other maps."""
        return self.box_roi_pool(features, boxes, image_sizes)

    def scores(
        self,
        features: Tensor,
        boxes: list[Tensor],
        image_sizes: list[tuple[int, int]],
        pooled: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Class logits ``[R, num_classes]`` and box deltas ``[R, num_classes * 4]``.

        ``R`` counts the boxes of all images, in order; deltas are relative to each box.
        ``pooled`` is :meth:`pool`'s output for these boxes when the caller has it already.
        """
        if pooled is None:
            pooled = self.pool(features, boxes, image_sizes)
        return self.box_predictor(self.box_head(pooled))

    def losses_and_regions(
        self,
        features: Tensor,
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]],
    ) -> tuple[dict[str, Tensor], TrainingRegions]:
        """:meth:`losses`, plus the sampled regions they were computed on."""
        rois, _, labels, regression_targets = self.select_training_samples(
            [p.detach() for p in proposals], targets
        )
        pooled = self.pool(features, rois, image_sizes)
        class_logits, box_regression = self.scores(features, rois, image_sizes, pooled)
        loss_cls, loss_box = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        losses = {"loss_classifier": loss_cls, "loss_box_reg": loss_box}
        return losses, TrainingRegions(rois, pooled)

    def losses(
        self,
        features: Tensor,
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]],
    ) -> dict[str, Tensor]:
        """Classification and box-regression losses on sampled proposals (ground truth added)."""
        return self.losses_and_regions(features, proposals, image_sizes, targets)[0]

    def postprocess_detections(
        self,
        class_logits: Tensor,
        box_regression: Tensor,
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """torchvision's post-processing, step for step: boxes decoded per class and clipped,
        background dropped, scores above ``score_thresh`` and boxes not empty kept, per-class NMS,
        the ``detections_per_img`` best. The NMS is :func:`~qmimic.models.proposal_nms.
        top_class_nms`, which in an exported graph stops at the detection budget.

        ``class_logits`` ``[R, K]``, ``box_regression`` ``[R, 4 K]`` for the proposals of all
        images in order; returns per image ``boxes`` ``[D, 4]``, ``scores`` ``[D]``, ``labels``
        ``[D]`` (1..K-1).
        """
        counts = [p.shape[0] for p in proposals]  # shape, not len: stays dynamic when traced
        decoded = self.box_coder.decode(box_regression, proposals).split(counts)
        probabilities = class_logits.softmax(-1).split(counts)
        all_boxes, all_scores, all_labels = [], [], []
        for boxes, scores, shape in zip(decoded, probabilities, image_shapes, strict=True):
            boxes = box_ops.clip_boxes_to_image(boxes, shape)[:, 1:].reshape(-1, 4)
            labels = torch.arange(scores.shape[-1], device=scores.device).expand_as(scores)
            scores, labels = scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
            keep = torch.where(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = top_class_nms(boxes, scores, labels, self.nms_thresh, self.detections_per_img)
            all_boxes.append(boxes[keep])
            all_scores.append(scores[keep])
            all_labels.append(labels[keep])
        return all_boxes, all_scores, all_labels

    def detect(
        self,
        features: Tensor,
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Post-processed detections per image: ``boxes`` [D, 4], ``scores`` [D], ``labels`` [D]."""
        class_logits, box_regression = self.scores(features, proposals, image_sizes)
        boxes, scores, labels = self.postprocess_detections(
            class_logits, box_regression, proposals, image_sizes
        )
        return [
            {"boxes": b, "scores": s, "labels": lbl}
            for b, s, lbl in zip(boxes, scores, labels, strict=True)
        ]
