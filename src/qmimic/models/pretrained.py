"""ImageNet weights for full-width backbones: torchvision's, fetched or read from a local file.

Only the layers that exist in the ImageNet classifier are loaded (trunk, ResNet ``layer4``, VGG
``fc6``/``fc7``); layers new to detection (RPN, R-FCN reduce and score maps, predictors) keep
their random initialisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import ResNet18_Weights, VGG16_Weights

from qmimic.errors import UserError

IMAGENET_WEIGHTS = {
    "resnet18": ResNet18_Weights.IMAGENET1K_V1,
    "vgg16": VGG16_Weights.IMAGENET1K_V1,
}


def download_state_dict(arch: str) -> dict[str, Tensor]:
    """torchvision's ImageNet weights of ``arch``, from torch hub's cache or the internet."""
    return IMAGENET_WEIGHTS[arch].get_state_dict(progress=False)


def imagenet_state_dict(arch: str, weights_path: str | None = None) -> dict[str, Tensor]:
    """The ImageNet state dict of torchvision's ``arch``: read from ``weights_path`` if given.

    Raises:
        UserError: the file is missing or unreadable, or the weights cannot be fetched; the
            message names the file or the URL and the fix.
    """
    if weights_path is not None:
        return _read(Path(weights_path).expanduser())
    try:
        return download_state_dict(arch)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a bad hash a RuntimeError
        raise UserError(
            f"cannot fetch torchvision's ImageNet weights for {arch} ({exc}); download "
            f"{IMAGENET_WEIGHTS[arch].url} and pass model.weights_path=/path/to/that/file, "
            "or train from scratch with model.pretrained=false"
        ) from exc


def _read(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise UserError(
            f"weights file not found: {path}; fix model.weights_path or set model.pretrained=false"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for a file that is not a state dict
        raise UserError(f"cannot read weights file {path}: {exc}") from exc
    if not isinstance(state, dict):
        raise UserError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    return state


def load_imagenet_weights(
    state: dict[str, Tensor], *, trunk: nn.Module, heads: Sequence[nn.Module], source: str
) -> None:
    """Copy ``state`` into ``trunk`` (every tensor required) and ``heads`` (the names they share).

    Raises:
        UserError: the trunk misses tensors or shapes differ, i.e. ``source`` does not hold the
            weights of the configured architecture at full width.
    """
    missing = [
        k for k in trunk.state_dict() if k not in state and not k.endswith("num_batches_tracked")
    ]
    if missing:
        raise UserError(
            f"{source} does not hold the weights of the configured backbone: it lacks "
            f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}"
        )
    for part in (trunk, *heads):
        shared = {k: v for k, v in state.items() if k in part.state_dict()}
        try:
            part.load_state_dict(shared, strict=False)
        except RuntimeError as exc:
            raise UserError(
                f"{source} does not fit the configured backbone (pretrained weights need "
                f"width 1): {exc}"
            ) from exc
