import pytest
import torch
from torch import nn

from helpers import TINY_DETECTOR
from qmimic.errors import UserError
from qmimic.models import ARCHS, FRAMEWORKS, DetectorConfigError, build_detector, count_parameters
from qmimic.models.resnet import scale_channels
from qmimic.quant import FeatureQuantizer, insert_quantizers

COMBINATIONS = [(arch, framework) for arch in ARCHS for framework in FRAMEWORKS]


def conv_out_channels(module: nn.Module) -> list[int]:
    return [m.out_channels for m in module.modules() if isinstance(m, nn.Conv2d)]


def sample_batch(n: int = 2, size: int = 96):
    images = [torch.rand(3, size, size) for _ in range(n)]
    targets = [
        {"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0]]), "labels": torch.tensor([2])}
        for _ in range(n)
    ]
    return images, targets


@pytest.mark.parametrize(
    "width, trunk_max, head_max", [(1.0, 256, 512), (1 / 16, 16, 32), (1 / 32, 8, 16)]
)
def test_width_scales_every_layer(width: float, trunk_max: int, head_max: int):
    detector = build_detector(width=width, **TINY_DETECTOR)
    assert max(conv_out_channels(detector.trunk)) == trunk_max
    assert detector.feature_channels == trunk_max
    # The RPN conv keeps the trunk's width; its two outputs are per-anchor predictions.
    assert detector.rpn.head.conv[0][0].out_channels == trunk_max
    assert max(conv_out_channels(detector.roi_heads.box_head)) == head_max
    assert detector.roi_heads.box_predictor.cls_score.in_features == head_max


def test_resnet18_1_16_has_paper_stage_widths():
    detector = build_detector(width=1 / 16, **TINY_DETECTOR)
    stages = [
        detector.trunk.layer1,
        detector.trunk.layer2,
        detector.trunk.layer3,
        detector.roi_heads.box_head.layer4,
    ]
    assert [max(conv_out_channels(s)) for s in stages] == [4, 8, 16, 32]


def test_scale_channels_never_reaches_zero_nor_exceeds_the_width():
    assert scale_channels(64, 1 / 128) == 1
    assert scale_channels(48, 1 / 3) == 16
    assert scale_channels(64, 0.3) == 19  # rounded down: never wider than claimed
    with pytest.raises(ValueError, match="width"):
        scale_channels(64, 0)


def test_narrow_detector_is_much_smaller():
    full = count_parameters(build_detector(width=1.0, **TINY_DETECTOR))
    tiny = count_parameters(build_detector(width=1 / 16, **TINY_DETECTOR))
    assert tiny * 100 < full


@pytest.mark.parametrize("width", [1.0, 1 / 32])
@pytest.mark.parametrize("arch, framework", COMBINATIONS)
def test_every_combination_trains_one_step_and_predicts(arch: str, framework: str, width: float):
    torch.manual_seed(0)
    detector = build_detector(arch=arch, framework=framework, width=width, **TINY_DETECTOR)
    images, targets = sample_batch()
    before = [p.detach().clone() for p in detector.parameters()]
    losses = detector.train().losses(images, targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    torch.optim.SGD(detector.parameters(), lr=0.01).step()
    changed = sum(not torch.equal(a, b) for a, b in zip(before, detector.parameters(), strict=True))
    assert changed > len(before) // 2
    with torch.no_grad():
        predictions = detector.eval().predict(images)
    assert len(predictions) == 2
    for p in predictions:
        assert p["boxes"].shape == (len(p["scores"]), 4) and p["labels"].dtype == torch.int64


@pytest.mark.parametrize("arch, framework", COMBINATIONS)
def test_image_without_boxes_trains(arch: str, framework: str):
    detector = build_detector(arch=arch, framework=framework, width=1 / 16, **TINY_DETECTOR)
    images, targets = sample_batch()
    targets[1] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = detector.train().losses(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_api_does_not_depend_on_module_mode(framework: str):
    detector = build_detector(framework=framework, width=1 / 16, **TINY_DETECTOR)
    images, targets = sample_batch()
    detector.eval()
    with torch.no_grad():
        assert set(detector.losses(images, targets)) >= {"loss_classifier"}
    detector.train()
    with torch.no_grad():
        predictions = detector.predict(images)
    assert len(predictions) == 2
    for p in predictions:
        assert p["boxes"].shape[1] == 4 and p["boxes"].shape[0] == p["scores"].shape[0]
        assert p["labels"].dtype == torch.int64 and (p["labels"] >= 1).all()


@pytest.mark.parametrize("arch, framework", COMBINATIONS)
def test_predictions_are_in_input_image_pixels(arch: str, framework: str):
    overrides = {**TINY_DETECTOR, "box_score_thresh": 0.0}
    detector = build_detector(arch=arch, framework=framework, width=1 / 16, **overrides).eval()
    image = torch.rand(3, 60, 150)  # resized to 96 px short side inside the detector
    with torch.no_grad():
        (prediction,) = detector.predict([image])
    boxes = prediction["boxes"]
    assert len(boxes) > 0
    assert boxes[:, [0, 2]].max() <= 150 + 1e-3 and boxes[:, [1, 3]].max() <= 60 + 1e-3


@pytest.mark.parametrize("arch, channels", [("resnet18", 16), ("vgg16", 32)])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_stage_calls_compose_to_losses(arch: str, channels: int, framework: str):
    detector = build_detector(arch=arch, framework=framework, width=1 / 16, **TINY_DETECTOR)
    images, targets = sample_batch()
    batch, resized = detector.eval().prepare(images, targets)
    features = detector.features(batch)
    assert features.shape == (2, channels, 96 // 16, 96 // 16)
    proposals, rpn_losses = detector.proposals(batch, features, resized)
    assert len(proposals) == 2 and set(rpn_losses) == {"loss_objectness", "loss_rpn_box_reg"}
    roi = detector.roi_losses(batch, features, proposals, resized)
    assert set(roi) == {"loss_classifier", "loss_box_reg"}


@pytest.mark.parametrize("arch", ARCHS)
def test_teacher_and_student_feature_maps_align(arch: str):
    images, _ = sample_batch(1, 128)
    images.append(torch.rand(3, 100, 170))  # padded inside the batch to a multiple of 32
    maps = []
    for width in (1.0, 1 / 4, 1 / 16, 1 / 32):
        # R-FCN keeps VGG's full-width build small (no fc6); the trunk is the same.
        detector = build_detector(arch=arch, framework="rfcn", width=width, **TINY_DETECTOR)
        with torch.no_grad():
            maps.append(detector.eval().features(detector.prepare(images)[0]))
    assert {m.shape[-2:] for m in maps} == {maps[0].shape[-2:]}
    assert [m.shape[1] for m in maps] == [detector.feature_channels * k for k in (32, 8, 2, 1)]


def test_bad_builder_arguments_are_rejected():
    with pytest.raises(ValueError, match="unknown arch"):
        build_detector(arch="resnet999", num_classes=3)
    with pytest.raises(ValueError, match="unknown framework"):
        build_detector(framework="yolo", num_classes=3)
    with pytest.raises(ValueError, match="num_classes"):
        build_detector(num_classes=1)
    with pytest.raises(ValueError, match="width"):
        build_detector(width=1.5, num_classes=3)


def test_builder_errors_reach_the_command_line_as_user_errors():
    with pytest.raises(DetectorConfigError) as error:
        build_detector(arch="vgg19", num_classes=3)
    assert isinstance(error.value, UserError) and isinstance(error.value, ValueError)


def test_stride_and_raw_features_are_the_detector_api():
    detector = build_detector(arch="resnet18", width=0.0625, **TINY_DETECTOR).eval()
    insert_quantizers(detector, lambda: FeatureQuantizer(step=0.5))
    batch, _ = detector.prepare([torch.rand(3, 96, 96)])
    raw = detector.raw_features(batch)
    assert detector.stride == 16 and raw.shape[-2:] == (96 // 16, 96 // 16)
    assert torch.equal(detector.features(batch), detector.apply_neck(raw))
    assert not torch.equal(raw, detector.apply_neck(raw))  # the neck quantizes, the raw map not
    assert detector.feature_step == 0.5 and detector.roi_sampling_ratio == 2
