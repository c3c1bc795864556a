"""Model report: parameters and FLOPs of one prediction at a given input size."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from qmimic.models.builder import count_parameters
from qmimic.models.detector import TwoStageDetector


def default_input_size(detector: TwoStageDetector) -> tuple[int, int]:
    """``(H, W)`` of an image the test-time transform keeps as is: ``(min_size, max_size)``."""
    transform = detector.transform
    return int(transform.min_size[-1]), int(transform.max_size)


def _boxes_in(height: int, width: int, count: int, generator: torch.Generator) -> Tensor:
    corner = torch.rand(count, 2, generator=generator) * torch.tensor([width, height]) * 0.75
    size = torch.rand(count, 2, generator=generator) * torch.tensor([width, height]) * 0.25 + 8
    return torch.cat([corner, corner + size], dim=1)


@torch.no_grad()
def model_report(
    detector: TwoStageDetector, image_size: tuple[int, int] | None = None
) -> dict[str, Any]:
    """Parameters and GFLOPs of one eval-mode prediction on a ``[3, H, W]`` image.

    FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (2 per multiply-add of
    convolutions and matrix products; RoIAlign, PSRoIAlign and NMS are not counted). So that
    the figure does not depend on what an untrained RPN happens to propose, the region head
    scores exactly the test proposal budget (``rpn_post_nms_top_n_test``) of random boxes.

    Args:
        detector: the detector; its train/eval mode is restored afterwards.
        image_size: ``(H, W)`` of the input image; default :func:`default_input_size`.

    Returns:
        ``{"parameters": int, "gflops": float, "input_size": [H, W], "proposals": int}``.
    """
    image_size = image_size or default_input_size(detector)
    device = next(detector.parameters()).device
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, *image_size, generator=generator).to(device)
    was_training = detector.training
    detector.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            batch, _ = detector.prepare([image])
            features = detector.features(batch)
            detector.proposals(batch, features)
            height, width = batch.image_sizes[0]
            count = detector.rpn.post_nms_top_n()
            boxes = [_boxes_in(height, width, count, generator).to(device)]
            detector.roi_heads.detect(features, boxes, batch.image_sizes)
    finally:
        detector.train(was_training)
    return {
        "parameters": count_parameters(detector),
        "gflops": counter.get_total_flops() / 1e9,
        "input_size": list(image_size),
        "proposals": count,
    }
