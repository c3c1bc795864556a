"""Region pooling by gather equals torchvision's RoIAlign, and only inference uses it."""

from __future__ import annotations

import copy

import pytest
import torch
from torchvision.ops import roi_align

from helpers import TINY_DETECTOR, assert_same_detections
from qmimic.models import build_detector
from qmimic.models.fast_rcnn_head import SingleMapRoIAlign
from qmimic.models.gather_roi_align import gather_roi_align
from qmimic.models.inference import for_inference


def _boxes(generator: torch.Generator) -> list[torch.Tensor]:
    """Image 0: boxes across the border, past the last cell, outside the map, degenerate and
    sub-cell; image 1: random boxes."""
    edges = torch.tensor([
        [-30.0, -30.0, 500.0, 500.0], [0.0, 0.0, 1.0, 1.0], [100.0, 50.0, 100.0, 50.0],
        [200.0, 140.0, 208.0, 144.0], [-100.0, -100.0, -50.0, -60.0], [10.3, 20.7, 60.2, 80.9],
        [190.0, 130.0, 260.0, 200.0],
    ])  # fmt: skip
    corners = torch.rand(9, 2, 2, generator=generator) * 220 - 10
    random = torch.cat([corners.min(dim=1).values, corners.max(dim=1).values], dim=1)
    return [edges, random]


@pytest.mark.parametrize(("output_size", "sampling_ratio"), [(7, 2), (14, 2), (3, 1), (5, 3)])
def test_gather_equals_torchvision_roi_align(output_size: int, sampling_ratio: int):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 5, 9, 13, generator=generator)  # a 144 x 208 image at stride 16
    boxes = _boxes(generator)
    expected = roi_align(features, boxes, output_size, 1 / 16, sampling_ratio, aligned=True)
    got = gather_roi_align(features, boxes, output_size, 1 / 16, sampling_ratio)
    assert got.shape == expected.shape == (16, 5, output_size, output_size)
    assert expected.abs().sum() > 0 and (expected == 0).any()  # boxes inside and outside
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_gather_refuses_an_adaptive_sampling_grid():
    with pytest.raises(ValueError, match="sampling_ratio > 0"):
        gather_roi_align(torch.rand(1, 2, 4, 4), [torch.rand(1, 4)], 2, 1.0, 0)


def test_only_inference_on_the_cpu_pools_by_gather(monkeypatch: pytest.MonkeyPatch):
    pool = SingleMapRoIAlign(output_size=7, stride=16, sampling_ratio=2)
    calls = []
    monkeypatch.setattr(
        "qmimic.models.fast_rcnn_head.gather_roi_align",
        lambda *args: calls.append(1) or gather_roi_align(*args),
    )
    features = torch.rand(1, 4, 9, 13, requires_grad=True)
    boxes, sizes = [torch.tensor([[10.0, 10.0, 90.0, 70.0]])], [(144, 208)]
    pool(features, boxes, sizes).sum().backward()  # not switched on: torchvision's kernel
    pool.gather_on_cpu = True
    pool(features, boxes, sizes).sum().backward()  # a gradient is needed: torchvision's kernel
    assert calls == [] and features.grad is not None
    with torch.no_grad():
        pool(features, boxes, sizes)
    assert calls == [1]


def test_prepared_detector_detects_the_same():
    torch.manual_seed(0)
    detector = build_detector(width=1 / 4, **TINY_DETECTOR).eval()
    prepared = for_inference(copy.deepcopy(detector))
    assert all(m.gather_on_cpu for m in prepared.modules() if isinstance(m, SingleMapRoIAlign))
    images = [torch.rand(3, 96, 96), torch.rand(3, 80, 96)]
    with torch.inference_mode():
        expected, got = detector.predict(images), prepared.predict(images)
    assert_same_detections(expected, got)
