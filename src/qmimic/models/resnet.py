"""Width-scaled ResNet-18 split the classic two-stage way.

The trunk (stem, ``layer1`` .. ``layer3``) produces the stride-16 feature map that feeds the RPN
and the RoI head; ``layer4`` runs on each pooled region as the RoI head (the "C4" layout of the
original Faster R-CNN ResNet models). Module names follow torchvision's ``resnet18`` so that its
ImageNet weights load into a full-width trunk and head unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

RESNET18_STAGE_CHANNELS = (64, 128, 256, 512)
RESNET18_BLOCKS_PER_STAGE = 2


def scale_channels(channels: int, width: float) -> int:
    """Channels of a layer at ``width`` times its original size, never below one."""
    if not 0 < width <= 1:
        raise ValueError(f"width must be in (0, 1], got {width}")
    return max(1, round(channels * width))


def _stage(
    in_channels: int,
    out_channels: int,
    stride: int,
    norm_layer: Callable[[int], nn.Module],
) -> nn.Sequential:
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
            norm_layer(out_channels),
        )
    blocks = [BasicBlock(in_channels, out_channels, stride, downsample, norm_layer=norm_layer)]
    blocks += [
        BasicBlock(out_channels, out_channels, norm_layer=norm_layer)
        for _ in range(RESNET18_BLOCKS_PER_STAGE - 1)
    ]
    return nn.Sequential(*blocks)


class ResNet18Trunk(nn.Module):
    """Stem and ``layer1``..``layer3`` of a width-scaled ResNet-18.

    Input: images ``[B, 3, H, W]``, normalised. Output: the feature map ``[B, C, ceil(H/16),
    ceil(W/16)]`` with ``C = out_channels`` (256 at full width, 16 at width 1/16).
    """

    def __init__(self, width: float = 1.0, norm_layer: Callable[[int], nn.Module] | None = None):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        c1, c2, c3, _ = (scale_channels(c, width) for c in RESNET18_STAGE_CHANNELS)
        self.conv1 = nn.Conv2d(3, c1, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(c1)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = _stage(c1, c1, 1, norm_layer)
        self.layer2 = _stage(c1, c2, 2, norm_layer)
        self.layer3 = _stage(c2, c3, 2, norm_layer)
        self.out_channels = c3
        self.stride = 16

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer3(self.layer2(self.layer1(x)))


class ResNet18RoIHead(nn.Module):
    """``layer4`` of a width-scaled ResNet-18 applied to pooled regions, then global pooling.

    Input: region features ``[R, C_in, S, S]``. Output: ``[R, out_channels]`` (512 at full width).
    """

    def __init__(
        self,
        in_channels: int,
        width: float = 1.0,
        norm_layer: Callable[[int], nn.Module] | None = None,
    ):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        c4 = scale_channels(RESNET18_STAGE_CHANNELS[3], width)
        self.layer4 = _stage(in_channels, c4, 2, norm_layer)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_channels = c4

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.layer4(x)).flatten(1)
