"""Width-scaled VGG-16 split the classic Faster R-CNN way.

The trunk is ``conv1_1`` .. ``conv5_3`` with the first four max-pools (stride 16; ``pool5`` is
dropped); ``fc6``/``fc7`` on each 7x7 RoI form the region head. Module names and indices follow
torchvision's ``vgg16`` (``features.0`` .. ``features.28``, ``classifier.0`` and
``classifier.3``) so that its ImageNet weights load into a full-width trunk and head unchanged.
"""

from __future__ import annotations

from torch import Tensor, nn

from qmimic.models.width import scale_channels

# Output channels of conv1_1 .. conv5_3, "M" where a 2x2 max-pool follows (torchvision's "D").
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
VGG16_FC_FEATURES = 4096


def _init(module: nn.Module) -> None:
    # torchvision's VGG initialisation, so a scratch student starts where torchvision's would.
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0, 0.01)
        nn.init.zeros_(module.bias)


class VGG16Trunk(nn.Module):
    """``conv1_1`` .. ``conv5_3`` of a width-scaled VGG-16 (13 convolutions, 4 pools).

    Input: images ``[B, 3, H, W]``, normalised. Output: the feature map ``[B, C, floor(H/16),
    floor(W/16)]`` with ``C = out_channels`` (512 at full width, 16 at width 1/32).
    """

    def __init__(self, width: float = 1.0):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            out = scale_channels(item, width)
            layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.out_channels = channels
        self.stride = 16
        self.apply(_init)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


class VGG16RoIHead(nn.Module):
    """``fc6`` and ``fc7`` (with ReLU and dropout) of a width-scaled VGG-16 on pooled regions.

    Input: region features ``[R, C_in, S, S]`` (``S = roi_output_size``; 7 for ImageNet weights).
    Output: ``[R, out_channels]`` (4096 at full width, 128 at width 1/32).
    """

    def __init__(self, in_channels: int, roi_output_size: int = 7, width: float = 1.0):
        super().__init__()
        hidden = scale_channels(VGG16_FC_FEATURES, width)
        self.classifier = nn.Sequential(
            nn.Linear(in_channels * roi_output_size**2, hidden),  # fc6
            nn.ReLU(inplace=True),
            nn.Dropout(p=0.5),
            nn.Linear(hidden, hidden),  # fc7
            nn.ReLU(inplace=True),
            nn.Dropout(p=0.5),
        )
        self.out_channels = hidden
        self.apply(_init)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(x.flatten(1))
