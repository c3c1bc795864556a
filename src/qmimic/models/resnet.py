"""Width-scaled ResNet-18 split the classic two-stage way.

The trunk (stem, ``layer1`` .. ``layer3``) produces the stride-16 feature map that feeds the RPN
and the region head. In Faster R-CNN, ``layer4`` runs on each pooled region as the RoI head (the
"C4" layout of the original Faster R-CNN ResNet models); in R-FCN it runs once on the whole map
(see :class:`ResNet18RFCNBody`). Module names follow torchvision's ``resnet18`` so that its
ImageNet weights load into a full-width trunk and ``layer4`` unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

from qmimic.models.width import scale_channels

__all__ = ["ResNet18RFCNBody", "ResNet18RoIHead", "ResNet18Trunk", "scale_channels"]

RESNET18_STAGE_CHANNELS = (64, 128, 256, 512)
RESNET18_BLOCKS_PER_STAGE = 2
NormLayer = Callable[[int], nn.Module]


def _stage(
    in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer
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


def _dilate(stage: nn.Module, dilation: int) -> nn.Module:
    """Give every 3x3 convolution of ``stage`` a dilation (and the padding that keeps the size).

    torchvision's ``BasicBlock`` refuses ``dilation > 1`` in its constructor, but its convolutions
    work dilated; setting the attributes keeps torchvision's module names and weight shapes.
    """
    for module in stage.modules():
        if isinstance(module, nn.Conv2d) and module.kernel_size == (3, 3):
            module.dilation = (dilation, dilation)
            module.padding = (dilation, dilation)
    return stage


class ResNet18Trunk(nn.Module):
    """Stem and ``layer1``..``layer3`` of a width-scaled ResNet-18.

    Input: images ``[B, 3, H, W]``, normalised. Output: the feature map ``[B, C, ceil(H/16),
    ceil(W/16)]`` with ``C = out_channels`` (256 at full width, 16 at width 1/16).
    """

    def __init__(self, width: float = 1.0, norm_layer: NormLayer | None = None):
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

    def __init__(self, in_channels: int, width: float = 1.0, norm_layer: NormLayer | None = None):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        c4 = scale_channels(RESNET18_STAGE_CHANNELS[3], width)
        self.layer4 = _stage(in_channels, c4, 2, norm_layer)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_channels = c4

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.layer4(x)).flatten(1)


class ResNet18RFCNBody(nn.Module):
    """The R-FCN setting of ResNet on a stride-16 trunk: ``layer4`` on the whole map, then reduce.

    As in R-FCN (Dai et al., 2016) the last stage keeps stride 16 (stride 1, its 3x3 convolutions
    dilated by 2, so the receptive field grows as if it had stride 2) and a 1x1 convolution with
    ReLU halves its channels before the position-sensitive score maps (R-FCN: 2048 -> 1024 on
    ResNet-101; here 512 -> 256 at full width). Both scale with ``width``.

    Input: the trunk's map ``[B, C_in, H, W]``. Output: ``[B, out_channels, H, W]``.
    """

    def __init__(self, in_channels: int, width: float = 1.0, norm_layer: NormLayer | None = None):
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        c4 = scale_channels(RESNET18_STAGE_CHANNELS[3], width)
        reduced = scale_channels(RESNET18_STAGE_CHANNELS[3] // 2, width)
        self.layer4 = _dilate(_stage(in_channels, c4, 1, norm_layer), dilation=2)
        self.reduce = nn.Sequential(nn.Conv2d(c4, reduced, kernel_size=1), nn.ReLU(inplace=True))
        self.out_channels = reduced

    def forward(self, x: Tensor) -> Tensor:
        return self.reduce(self.layer4(x))
