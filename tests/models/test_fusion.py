"""Inference-time fusion keeps detections: BatchNorm folding and the skipped no-op resize."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from helpers import TINY_DETECTOR, assert_same_detections
from qmimic.models import build_detector
from qmimic.models.fusion import fold_batchnorm
from qmimic.models.input_transform import InputTransform


def _with_running_statistics(detector: nn.Module) -> nn.Module:
    """Random weights plus BatchNorm statistics and affine terms far from the identity."""
    generator = torch.Generator().manual_seed(0)
    for module in detector.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return detector.eval()


@pytest.mark.parametrize("framework", ["faster_rcnn", "rfcn"])
def test_folded_detector_detects_the_same(framework: str):
    torch.manual_seed(0)
    detector = _with_running_statistics(
        build_detector(framework=framework, width=1 / 4, **TINY_DETECTOR)
    )
    folded = fold_batchnorm(copy.deepcopy(detector))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in detector.modules())
    images = [torch.rand(3, 96, 96), torch.rand(3, 80, 96)]
    with torch.inference_mode():
        expected, got = detector.predict(images), folded.predict(images)
    assert_same_detections(expected, got)


def test_folding_refuses_a_training_model():
    with pytest.raises(ValueError, match="eval-mode"):
        fold_batchnorm(build_detector(width=1 / 16, **TINY_DETECTOR).train())


MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # a different value per channel


def _both(min_size, max_size: int) -> tuple[InputTransform, GeneralizedRCNNTransform]:
    settings = dict(min_size=min_size, max_size=max_size, image_mean=MEAN, image_std=STD)
    return InputTransform(**settings), GeneralizedRCNNTransform(**settings)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("size", [(60, 100), (60, 90), (30, 50), (80, 120)])  # 2 no-ops, 2 real
def test_input_transform_equals_torchvisions(training: bool, size: tuple[int, int]):
    ours, theirs = _both((60,), 100)
    images = [torch.rand(3, *size)]
    boxes = torch.tensor([[1.0, 2.0, 30.0, 40.0]])
    outputs = []
    for transform in (ours, theirs):
        transform.train(training)
        torch.manual_seed(0)
        batch, targets = transform([i.clone() for i in images], [{"boxes": boxes.clone()}])
        outputs.append((batch.tensors, batch.image_sizes, targets[0]["boxes"]))
    (a, sizes_a, boxes_a), (b, sizes_b, boxes_b) = outputs
    assert torch.equal(a, b) and sizes_a == sizes_b and torch.equal(boxes_a, boxes_b)


def test_multi_scale_training_draws_the_same_random_sizes():
    ours, theirs = _both((48, 60, 72), 100)
    states = []
    for transform in (ours.train(), theirs.train()):
        torch.manual_seed(1)
        shapes = [transform([torch.rand(3, 60, 100)])[0].tensors.shape for _ in range(6)]
        states.append((shapes, torch.get_rng_state()))
    assert states[0][0] == states[1][0] and torch.equal(states[0][1], states[1][1])


@pytest.mark.parametrize("training", [False, True])
def test_a_batch_of_mixed_sizes_equals_torchvisions(training: bool):
    """Padding zeroed around each image, channels included, the same values bit for bit."""
    ours, theirs = _both((60,), 100)
    images = [torch.rand(3, 60, 100), torch.rand(3, 60, 90), torch.rand(3, 50, 70)]
    (a, sizes_a), (b, sizes_b) = [
        (batch.tensors, batch.image_sizes)
        for batch, _ in (ours.train(training)(images), theirs.train(training)(images))
    ]
    assert torch.equal(a, b) and sizes_a == sizes_b and a.shape == (3, 3, 64, 128)
    mixed = [torch.rand(1, 40, 40), torch.rand(3, 36, 70)]
    assert torch.equal(ours.batch_images(mixed), theirs.batch_images(mixed))


@pytest.mark.parametrize("training", [False, True])
def test_a_fixed_size_transform_equals_torchvisions(training: bool):
    settings = dict(min_size=(60,), max_size=100, image_mean=MEAN, image_std=STD)
    ours = InputTransform(**settings, fixed_size=(64, 96)).train(training)
    theirs = GeneralizedRCNNTransform(**settings, fixed_size=(64, 96)).train(training)
    image, boxes = torch.rand(3, 60, 100), torch.tensor([[1.0, 2.0, 30.0, 40.0]])
    (a, targets_a), (b, targets_b) = [
        t([image.clone()], [{"boxes": boxes.clone()}]) for t in (ours, theirs)
    ]
    assert torch.equal(a.tensors, b.tensors) and a.image_sizes == b.image_sizes
    assert torch.equal(targets_a[0]["boxes"], targets_b[0]["boxes"])


def test_the_callers_targets_are_not_changed():
    ours, _ = _both((30,), 50)
    boxes = torch.tensor([[1.0, 2.0, 30.0, 40.0]])
    target = {"boxes": boxes}
    _, scaled = ours([torch.rand(3, 60, 100)], [target])
    assert target["boxes"] is boxes and torch.equal(scaled[0]["boxes"], boxes / 2)


def test_an_integer_image_gets_torchvisions_error():
    ours, _ = _both((60,), 100)
    with pytest.raises(TypeError, match="floating type"):
        ours([torch.zeros(3, 60, 100, dtype=torch.uint8)])


@pytest.mark.parametrize("channels", [1, 3])
def test_grey_and_colour_images_together_equal_torchvisions(channels: int):
    """torchvision's normalisation broadcasts a one-channel image to three channels."""
    ours, theirs = _both((60,), 100)
    images = [torch.rand(channels, 60, 100), torch.rand(3, 60, 90)]
    a, b = ours.eval()(images)[0], theirs.eval()(images)[0]
    assert torch.equal(a.tensors, b.tensors) and a.image_sizes == b.image_sizes


def test_images_unlike_the_first_or_tracked_by_autograd_equal_torchvisions():
    """Another dtype than the batch's, or an image that needs its gradient: normalised first,
    as torchvision does it (the gradient flows back to the image)."""
    ours, theirs = _both((60,), 100)
    mixed = [torch.rand(3, 60, 100), torch.rand(3, 60, 90, dtype=torch.float64)]
    assert torch.equal(ours.eval()(mixed)[0].tensors, theirs.eval()(mixed)[0].tensors)
    image = torch.rand(3, 60, 100, requires_grad=True)
    ours([image])[0].tensors.sum().backward()
    expected = torch.tensor([1 / s for s in STD])[:, None, None].expand(3, 60, 100)
    torch.testing.assert_close(image.grad, expected)


def test_keypoints_are_resized_as_torchvision_resizes_them():
    ours, theirs = _both((30,), 50)
    target = {"boxes": torch.tensor([[2.0, 4.0, 40.0, 50.0]]),
              "keypoints": torch.tensor([[[10.0, 20.0, 1.0], [30.0, 40.0, 1.0]]])}  # fmt: skip
    for fixed in (None, (32, 48)):
        ours.fixed_size = theirs.fixed_size = fixed
        (_, a), (_, b) = [
            t.eval()([torch.rand(3, 60, 100)], [dict(target)]) for t in (ours, theirs)
        ]
        assert torch.equal(a[0]["keypoints"], b[0]["keypoints"])
        assert torch.equal(a[0]["boxes"], b[0]["boxes"])
