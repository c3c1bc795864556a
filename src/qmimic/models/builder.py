"""``build_detector``: the one place where a config becomes a detector."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from qmimic.models.detector import TwoStageDetector
from qmimic.models.fast_rcnn_head import FastRCNNHead, SingleMapRoIAlign
from qmimic.models.resnet import ResNet18RoIHead, ResNet18Trunk
from qmimic.models.rpn import ProposalNetwork

ARCHS = ("resnet18",)
FRAMEWORKS = ("faster_rcnn",)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FEATURE_STRIDE = 16


def build_detector(
    *,
    arch: str = "resnet18",
    framework: str = "faster_rcnn",
    width: float = 1.0,
    num_classes: int,
    min_size: int | Sequence[int] = 600,
    max_size: int = 1000,
    image_mean: Sequence[float] = IMAGENET_MEAN,
    image_std: Sequence[float] = IMAGENET_STD,
    anchor_sizes: Sequence[int] = (64, 128, 256, 512),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    rpn_pre_nms_top_n_train: int = 12000,
    rpn_pre_nms_top_n_test: int = 6000,
    rpn_post_nms_top_n_train: int = 2000,
    rpn_post_nms_top_n_test: int = 300,
    rpn_nms_thresh: float = 0.7,
    rpn_fg_iou_thresh: float = 0.7,
    rpn_bg_iou_thresh: float = 0.3,
    rpn_batch_size_per_image: int = 256,
    rpn_positive_fraction: float = 0.5,
    roi_output_size: int = 14,
    roi_sampling_ratio: int = 2,
    box_fg_iou_thresh: float = 0.5,
    box_bg_iou_thresh: float = 0.5,
    box_batch_size_per_image: int = 128,
    box_positive_fraction: float = 0.25,
    box_score_thresh: float = 0.05,
    box_nms_thresh: float = 0.5,
    box_detections_per_img: int = 100,
) -> TwoStageDetector:
    """Build a width-scaled two-stage detector.

    Args:
        arch: backbone, one of :data:`ARCHS`.
        framework: second stage, one of :data:`FRAMEWORKS`.
        width: channel multiplier applied to every convolution (backbone, RPN conv, region
            head); ``1/16`` gives the paper's ResNet18-1-16.
        num_classes: number of classes INCLUDING background (21 for Pascal VOC).
        min_size, max_size: resize rule of the input transform (shorter side to ``min_size``,
            longer side at most ``max_size``); a sequence of ``min_size`` values gives
            multi-scale training.
        anchor_sizes, aspect_ratios: anchors on the stride-16 map, in resized-image pixels.
        rpn_*: proposal budgets and RPN training samplers (torchvision's meanings).
        roi_output_size: side of the RoIAlign grid fed to the region head (``layer4`` halves it).
        box_*: region-head sampling and post-processing (torchvision's meanings).

    Returns:
        a :class:`~qmimic.models.detector.TwoStageDetector`.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if framework not in FRAMEWORKS:
        raise ValueError(f"unknown framework {framework!r}; choose one of {', '.join(FRAMEWORKS)}")
    if num_classes < 2:
        raise ValueError(
            f"num_classes counts the background, so it must be >= 2, got {num_classes}"
        )
    min_sizes = (min_size,) if isinstance(min_size, int) else tuple(min_size)
    transform = GeneralizedRCNNTransform(
        min_size=min_sizes,
        max_size=max_size,
        image_mean=list(image_mean),
        image_std=list(image_std),
    )
    trunk = ResNet18Trunk(width)
    anchors = AnchorGenerator(sizes=(tuple(anchor_sizes),), aspect_ratios=(tuple(aspect_ratios),))
    rpn = ProposalNetwork(
        anchors,
        RPNHead(trunk.out_channels, anchors.num_anchors_per_location()[0]),
        fg_iou_thresh=rpn_fg_iou_thresh,
        bg_iou_thresh=rpn_bg_iou_thresh,
        batch_size_per_image=rpn_batch_size_per_image,
        positive_fraction=rpn_positive_fraction,
        pre_nms_top_n={"training": rpn_pre_nms_top_n_train, "testing": rpn_pre_nms_top_n_test},
        post_nms_top_n={"training": rpn_post_nms_top_n_train, "testing": rpn_post_nms_top_n_test},
        nms_thresh=rpn_nms_thresh,
    )
    box_head = ResNet18RoIHead(trunk.out_channels, width)
    roi_heads = FastRCNNHead(
        box_roi_pool=SingleMapRoIAlign(roi_output_size, FEATURE_STRIDE, roi_sampling_ratio),
        box_head=box_head,
        box_predictor=FastRCNNPredictor(box_head.out_channels, num_classes),
        fg_iou_thresh=box_fg_iou_thresh,
        bg_iou_thresh=box_bg_iou_thresh,
        batch_size_per_image=box_batch_size_per_image,
        positive_fraction=box_positive_fraction,
        bbox_reg_weights=None,
        score_thresh=box_score_thresh,
        nms_thresh=box_nms_thresh,
        detections_per_img=box_detections_per_img,
    )
    return TwoStageDetector(transform, trunk, rpn, roi_heads)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module`` (trainable or not)."""
    return sum(p.numel() for p in module.parameters())
