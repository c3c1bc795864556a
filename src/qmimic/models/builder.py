"""``build_detector``: the one place where a config becomes a detector."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.rpn import RPNHead

from qmimic.errors import UserError
from qmimic.models.detector import TwoStageDetector
from qmimic.models.fast_rcnn_head import FastRCNNHead, SingleMapRoIAlign
from qmimic.models.input_transform import InputTransform
from qmimic.models.pretrained import imagenet_state_dict, load_imagenet_weights
from qmimic.models.resnet import ResNet18RFCNBody, ResNet18RoIHead, ResNet18Trunk
from qmimic.models.rfcn_head import PositionSensitivePredictor, RFCNHead, position_sensitive_pool
from qmimic.models.rpn import ProposalNetwork
from qmimic.models.vgg import VGG16RoIHead, VGG16Trunk

ARCHS = ("resnet18", "vgg16")
FRAMEWORKS = ("faster_rcnn", "rfcn")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# RoIAlign grid of the Faster R-CNN head: ResNet's layer4 halves 14 to 7; VGG's fc6 takes 7x7.
DEFAULT_ROI_OUTPUT_SIZE = {"resnet18": 14, "vgg16": 7}


class DetectorConfigError(UserError, ValueError):
    """A bad ``build_detector`` argument: a ``ValueError`` to callers, one line to CLI users."""


def build_detector(
    *,
    arch: str = "resnet18",
    framework: str = "faster_rcnn",
    width: float = 1.0,
    num_classes: int,
    pretrained: bool = False,
    weights_path: str | None = None,
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
    roi_output_size: int | None = None,
    roi_sampling_ratio: int = 2,
    ps_grid_size: int = 7,
    box_fg_iou_thresh: float = 0.5,
    box_bg_iou_thresh: float = 0.5,
    box_batch_size_per_image: int = 128,
    box_positive_fraction: float = 0.25,
    box_score_thresh: float = 0.05,
    box_nms_thresh: float = 0.5,
    box_detections_per_img: int = 100,
) -> TwoStageDetector:
    """Build a width-scaled two-stage detector: any of :data:`ARCHS` x :data:`FRAMEWORKS`.

    Every combination shares the stride-16 trunk (ResNet-18 stem..``layer3`` or VGG-16
    ``conv1_1``..``conv5_3``) that feeds both the RPN and the region head, so teacher and student
    of one arch give feature maps of the same size at any widths. Region heads:

    - ``faster_rcnn``: RoIAlign, then ResNet-18 ``layer4`` + global pooling, or VGG-16
      ``fc6``/``fc7``; torchvision's ``FastRCNNPredictor``.
    - ``rfcn``: position-sensitive score maps read with ``ps_roi_align`` and averaged; on
      ResNet-18 from ``layer4`` run on the whole map (stride 1, dilation 2) and a 1x1 reduction,
      on VGG-16 from ``conv5_3`` directly (see :mod:`qmimic.models.rfcn_head`).

    Args:
        arch: backbone, one of :data:`ARCHS`.
        framework: second stage, one of :data:`FRAMEWORKS`.
        width: channel multiplier in (0, 1] applied to every convolution and hidden layer
            (backbone, RPN conv, region head), rounded down, at least one channel; ``1/16`` gives
            the paper's ResNet18-1-16. Only the per-class outputs keep their size.
        num_classes: number of classes INCLUDING background (21 for Pascal VOC).
        pretrained: load torchvision's ImageNet weights into the backbone (``width`` 1 only).
        weights_path: read those weights from this local file instead of fetching them.
        min_size, max_size: resize rule of the input transform (shorter side to ``min_size``,
            longer side at most ``max_size``); a sequence of ``min_size`` values gives
            multi-scale training.
        anchor_sizes, aspect_ratios: anchors on the stride-16 map, in resized-image pixels.
        rpn_*: proposal budgets and RPN training samplers (torchvision's meanings).
        roi_output_size: side of the RoIAlign grid of the Faster R-CNN head; ``None`` picks the
            arch's classic size (14 for ResNet-18, 7 for VGG-16, which its ImageNet fc6 needs).
        roi_sampling_ratio: sampling points per bin of RoIAlign and PSRoIAlign.
        ps_grid_size: ``k`` of R-FCN's ``k x k`` position-sensitive bins.
        box_*: region-head sampling and post-processing (torchvision's meanings).

    Returns:
        a :class:`~qmimic.models.detector.TwoStageDetector`.

    Raises:
        DetectorConfigError: an argument is out of range or the combination is unsupported.
        UserError: the ImageNet weights cannot be fetched or read.
    """
    roi_output_size = roi_output_size or DEFAULT_ROI_OUTPUT_SIZE.get(arch, 14)
    _check_arguments(arch, framework, width, num_classes, pretrained, weights_path)
    if pretrained and arch == "vgg16" and framework == "faster_rcnn" and roi_output_size != 7:
        raise DetectorConfigError(
            f"model.roi_output_size={roi_output_size}, but VGG-16's ImageNet fc6 reads 7x7 "
            "regions; set model.roi_output_size=7"
        )
    trunk = _trunk(arch, width)
    roi_heads = _region_head(
        arch=arch,
        framework=framework,
        in_channels=trunk.out_channels,
        stride=trunk.stride,
        width=width,
        num_classes=num_classes,
        roi_output_size=roi_output_size,
        roi_sampling_ratio=roi_sampling_ratio,
        ps_grid_size=ps_grid_size,
        sampling=dict(
            fg_iou_thresh=box_fg_iou_thresh,
            bg_iou_thresh=box_bg_iou_thresh,
            batch_size_per_image=box_batch_size_per_image,
            positive_fraction=box_positive_fraction,
            bbox_reg_weights=None,
            score_thresh=box_score_thresh,
            nms_thresh=box_nms_thresh,
            detections_per_img=box_detections_per_img,
        ),
    )
    if pretrained:
        load_imagenet_weights(
            imagenet_state_dict(arch, weights_path),
            trunk=trunk,
            heads=[roi_heads.box_head],
            source=weights_path or f"torchvision's {arch} ImageNet weights",
        )
    anchors = AnchorGenerator(sizes=(tuple(anchor_sizes),), aspect_ratios=(tuple(aspect_ratios),))
    rpn = ProposalNetwork(
        anchors,
        # The RPN's 3x3 conv keeps the trunk's (width-scaled) channels.
        RPNHead(trunk.out_channels, anchors.num_anchors_per_location()[0]),
        fg_iou_thresh=rpn_fg_iou_thresh,
        bg_iou_thresh=rpn_bg_iou_thresh,
        batch_size_per_image=rpn_batch_size_per_image,
        positive_fraction=rpn_positive_fraction,
        pre_nms_top_n={"training": rpn_pre_nms_top_n_train, "testing": rpn_pre_nms_top_n_test},
        post_nms_top_n={"training": rpn_post_nms_top_n_train, "testing": rpn_post_nms_top_n_test},
        nms_thresh=rpn_nms_thresh,
    )
    transform = InputTransform(
        min_size=(min_size,) if isinstance(min_size, int) else tuple(min_size),
        max_size=max_size,
        image_mean=list(image_mean),
        image_std=list(image_std),
    )
    return TwoStageDetector(transform, trunk, rpn, roi_heads)


def _check_arguments(
    arch: str,
    framework: str,
    width: float,
    num_classes: int,
    pretrained: bool,
    weights_path: str | None,
) -> None:
    if arch not in ARCHS:
        raise DetectorConfigError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    if framework not in FRAMEWORKS:
        raise DetectorConfigError(
            f"unknown framework {framework!r}; choose one of {', '.join(FRAMEWORKS)}"
        )
    if not 0 < width <= 1:
        raise DetectorConfigError(f"width must be in (0, 1], got {width} (e.g. 0.0625 for 1/16)")
    if num_classes < 2:
        raise DetectorConfigError(
            f"num_classes counts the background, so it must be >= 2, got {num_classes}"
        )
    if pretrained and width != 1:
        raise DetectorConfigError(
            f"ImageNet weights exist for width 1 only, got width={width}; narrow students "
            "train from scratch: set model.pretrained=false"
        )
    if weights_path is not None and not pretrained:
        raise DetectorConfigError(
            f"model.weights_path={weights_path} is set but model.pretrained=false; set "
            "model.pretrained=true to load it, or weights_path=null"
        )


def _trunk(arch: str, width: float) -> ResNet18Trunk | VGG16Trunk:
    return ResNet18Trunk(width) if arch == "resnet18" else VGG16Trunk(width)


def _region_head(
    *,
    arch: str,
    framework: str,
    in_channels: int,
    stride: int,
    width: float,
    num_classes: int,
    roi_output_size: int,
    roi_sampling_ratio: int,
    ps_grid_size: int,
    sampling: dict[str, Any],
) -> FastRCNNHead:
    if framework == "faster_rcnn":
        box_head = (
            ResNet18RoIHead(in_channels, width)
            if arch == "resnet18"
            else VGG16RoIHead(in_channels, roi_output_size, width)
        )
        return FastRCNNHead(
            box_roi_pool=SingleMapRoIAlign(roi_output_size, stride, roi_sampling_ratio),
            box_head=box_head,
            box_predictor=FastRCNNPredictor(box_head.out_channels, num_classes),
            **sampling,
        )
    body: nn.Module = ResNet18RFCNBody(in_channels, width) if arch == "resnet18" else nn.Identity()
    return RFCNHead(
        box_roi_pool=position_sensitive_pool(ps_grid_size, stride, roi_sampling_ratio),
        box_head=body,
        box_predictor=PositionSensitivePredictor(
            getattr(body, "out_channels", in_channels), num_classes, ps_grid_size
        ),
        **sampling,
    )


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module`` (trainable or not)."""
    return sum(p.numel() for p in module.parameters())
