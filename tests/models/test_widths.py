"""Every hidden layer of every combination is as narrow as its width claims."""

import pytest
import torch
from torch import nn

from qmimic.models import ARCHS, FRAMEWORKS, build_detector
from qmimic.models.resnet import ResNet18RFCNBody
from qmimic.models.width import scale_channels

WIDTHS = (1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32)
# Outputs sized by classes, anchors or R-FCN bins, not by the network width.
PER_CLASS_OUTPUTS = ("rpn.head.cls_logits", "rpn.head.bbox_pred", "roi_heads.box_predictor")


def hidden_widths(detector: nn.Module) -> dict[str, int]:
    """Output channels / features of every conv and linear layer but the per-class outputs."""
    return {
        name: m.out_channels if isinstance(m, nn.Conv2d) else m.out_features
        for name, m in detector.named_modules()
        if isinstance(m, nn.Conv2d | nn.Linear) and not name.startswith(PER_CLASS_OUTPUTS)
    }


def build_on_meta(**kwargs) -> nn.Module:
    # Shapes only: the meta device skips allocating full-width VGG's 100M fc6 weights.
    with torch.device("meta"):
        return build_detector(num_classes=21, **kwargs)


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("arch", ARCHS)
def test_every_hidden_layer_scales_with_width(arch: str, framework: str):
    full = hidden_widths(build_on_meta(arch=arch, framework=framework, width=1.0))
    assert len(full) >= 14
    for width in WIDTHS:
        narrow = hidden_widths(build_on_meta(arch=arch, framework=framework, width=width))
        assert narrow.keys() == full.keys()
        for name, channels in full.items():
            assert narrow[name] == scale_channels(channels, width), (name, width)
            assert narrow[name] <= max(1, channels * width)  # "very tiny" stays true


@pytest.mark.parametrize(
    "arch, trunk, head",
    [
        # ResNet18-1-16: 4/8/16 channels in the trunk, layer4 at 32.
        ("resnet18", [4, 8, 16], 32),
        # VGG-1-32: conv1 .. conv5 at 2/4/8/16/16, fc6/fc7 at 128.
        ("vgg16", [2, 4, 8, 16], 128),
    ],
)
def test_paper_tiny_networks(arch: str, trunk: list[int], head: int):
    width = 1 / 16 if arch == "resnet18" else 1 / 32
    detector = build_on_meta(arch=arch, width=width)
    convs = [m.out_channels for m in detector.trunk.modules() if isinstance(m, nn.Conv2d)]
    assert sorted(set(convs)) == trunk
    assert detector.roi_heads.box_head.out_channels == head


def test_rfcn_resnet_body_keeps_stride_16_and_reduces():
    body = ResNet18RFCNBody(in_channels=16, width=1 / 16)
    out = body(torch.rand(1, 16, 5, 7))
    assert out.shape == (1, 16, 5, 7)  # layer4 at 32 channels, reduced to 16, same size
    assert max(m.out_channels for m in body.layer4.modules() if isinstance(m, nn.Conv2d)) == 32


def test_vgg_rfcn_reads_conv5_3_directly():
    detector = build_on_meta(arch="vgg16", framework="rfcn", width=1 / 32, ps_grid_size=3)
    assert isinstance(detector.roi_heads.box_head, nn.Identity)
    predictor = detector.roi_heads.box_predictor
    assert predictor.class_maps.in_channels == detector.feature_channels == 16
    assert predictor.class_maps.out_channels == 21 * 9 and predictor.box_maps.out_channels == 4 * 9
