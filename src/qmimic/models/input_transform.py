"""torchvision's detection input transform, without the resizes that change nothing."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.models.detection.transform import (
    GeneralizedRCNNTransform,
    _resize_image_and_masks,
    resize_boxes,
)


class InputTransform(GeneralizedRCNNTransform):
    """:class:`GeneralizedRCNNTransform` (resize, normalise, batch) that skips the bilinear
    resize when its scale is exactly 1, e.g. a 600x1000 image under the 600/1000 rule, or the
    built-in 192 px images under a 192 px rule.

    A bilinear resize at scale 1 (``align_corners=False``) samples every pixel at its own centre,
    so skipping it gives the same tensor, bit for bit; only its cost goes. The random size of
    multi-scale training is still drawn first, so the random stream is the one torchvision's
    transform would use. Traced (ONNX export) and scripted calls keep torchvision's path, whose
    graph must resize inputs of any size.

    Normalising and batching give torchvision's values with fewer passes over the pixels: the
    subtraction then an in-place division (the same two operations per element), and a batch
    whose padding alone is zeroed instead of a zero-filled batch written over.
    """

    def normalize(self, image: Tensor) -> Tensor:
        if torch.jit.is_scripting() or torch.jit.is_tracing() or not image.is_floating_point():
            return super().normalize(image)  # torchvision's graph, or its error
        mean = torch.as_tensor(self.image_mean, dtype=image.dtype, device=image.device)
        std = torch.as_tensor(self.image_std, dtype=image.dtype, device=image.device)
        return torch.sub(image, mean[:, None, None]).div_(std[:, None, None])

    def batch_images(self, images: list[Tensor], size_divisible: int = 32) -> Tensor:
        if torch.jit.is_scripting() or torch.jit.is_tracing():
            return super().batch_images(images, size_divisible)
        channels = max(image.shape[0] for image in images)
        height = math.ceil(max(image.shape[1] for image in images) / size_divisible)
        width = math.ceil(max(image.shape[2] for image in images) / size_divisible)
        shape = (len(images), channels, height * size_divisible, width * size_divisible)
        batch = images[0].new_empty(shape)
        for slot, image in zip(batch, images, strict=True):
            c, h, w = image.shape
            slot[:c, :h, :w].copy_(image)
            slot[c:].zero_()
            slot[:c, h:].zero_()
            slot[:c, :h, w:].zero_()
        return batch

    def resize(
        self, image: Tensor, target: dict[str, Tensor] | None = None
    ) -> tuple[Tensor, dict[str, Tensor] | None]:
        if torch.jit.is_scripting() or torch.jit.is_tracing() or self.fixed_size is not None:
            return super().resize(image, target)
        if self.training and self._skip_resize:
            return image, target
        size = self.torch_choice(self.min_size) if self.training else self.min_size[-1]
        height, width = image.shape[-2:]
        scale = min(size / min(height, width), self.max_size / max(height, width))
        if scale == 1.0:
            return image, target
        resized, target = _resize_image_and_masks(image, size, self.max_size, target)
        if target is not None:
            target["boxes"] = resize_boxes(target["boxes"], (height, width), resized.shape[-2:])
        return resized, target
