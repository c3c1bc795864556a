"""torchvision's detection input transform, without the passes over the pixels that change
nothing."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.transform import (
    GeneralizedRCNNTransform,
    _resize_image_and_masks,
    resize_boxes,
    resize_keypoints,
)

Target = dict[str, Tensor]


class InputTransform(GeneralizedRCNNTransform):
    """:class:`GeneralizedRCNNTransform` (resize, normalise, batch) with the same values, bit for
    bit, in fewer passes over the pixels.

    - The bilinear resize is skipped when its scale is exactly 1, e.g. a 600x1000 image under
      the 600/1000 rule, or the built-in 192 px images under a 192 px rule: at scale 1
      (``align_corners=False``) it samples every pixel at its own centre, so skipping it gives the
      same tensor. The random size of multi-scale training is still drawn first, so the random
      stream is the one torchvision's transform would use.
    - An image that is not resized is normalised straight into its place in the batch (the
      subtraction written there, then divided in place: torchvision's two operations per
      element), instead of normalised into a new tensor that is then copied into the batch.
      An image that is resized is normalised first, as torchvision does it.
    - The batch has its padding alone zeroed instead of being zero-filled and written over.

    Traced (ONNX export) and scripted calls keep torchvision's path, whose graph must resize
    inputs of any size.
    """

    def _eager(self) -> bool:
        return not (torch.jit.is_scripting() or torch.jit.is_tracing())

    def _statistics(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and std as ``[C, 1, 1]`` tensors of the image's dtype and device."""
        mean = torch.as_tensor(self.image_mean, dtype=image.dtype, device=image.device)
        std = torch.as_tensor(self.image_std, dtype=image.dtype, device=image.device)
        return mean[:, None, None], std[:, None, None]

    def normalize(self, image: Tensor) -> Tensor:
        if not self._eager() or not image.is_floating_point():
            return super().normalize(image)  # torchvision's graph, or its error
        mean, std = self._statistics(image)
        return torch.sub(image, mean).div_(std)

    def forward(
        self, images: list[Tensor], targets: list[Target] | None = None
    ) -> tuple[ImageList, list[Target] | None]:
        """``images`` (``[C, H_i, W_i]`` floats in [0, 1]) -> the normalised, padded batch
        ``[B, C, H, W]`` with each image's resized size, and the targets with boxes scaled to
        it (copied dicts; the caller's are not changed)."""
        if not self._eager():
            return super().forward(images, targets)
        if targets is not None:
            targets = [dict(target) for target in targets]
        prepared, raw = [], []
        for index, image in enumerate(images):
            if image.dim() != 3:
                raise ValueError(
                    f"images is expected to be a list of 3d tensors of shape [C, H, W], "
                    f"got {image.shape}"
                )
            target = targets[index] if targets is not None else None
            size = self._drawn_size(image)
            if size is None and self._normalizes_in_place(image, images[0]):
                prepared.append(image)  # normalised where it lands in the batch
                raw.append(True)
                continue
            image = self.normalize(image)
            if size is not None:
                image, target = self._resize_to(image, size, target)
            if targets is not None and target is not None:
                targets[index] = target
            prepared.append(image)
            raw.append(False)
        sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in prepared]
        batch = self._batch(prepared, raw, self.size_divisible)
        return ImageList(batch, sizes), targets

    def _normalizes_in_place(self, image: Tensor, first: Tensor) -> bool:
        """Whether ``image`` can be normalised where it lands in the batch with torchvision's
        values: a float image with one channel per mean value (torchvision broadcasts a
        one-channel image to three), of the batch's dtype and device (the batch is made like
        the ``first`` image), and not tracked by autograd (``out=`` writes are not)."""
        return (
            image.is_floating_point()
            and image.shape[0] == len(self.image_mean)
            and image.dtype == first.dtype
            and image.device == first.device
            and not (image.requires_grad and torch.is_grad_enabled())
        )

    def batch_images(self, images: list[Tensor], size_divisible: int = 32) -> Tensor:
        if not self._eager():
            return super().batch_images(images, size_divisible)
        return self._batch(images, [False] * len(images), size_divisible)

    def _batch(self, images: list[Tensor], raw: list[bool], size_divisible: int) -> Tensor:
        """``[B, C, H, W]`` with ``H``, ``W`` the largest sizes rounded up to ``size_divisible``;
        each image top-left in its slot (normalised on the way where ``raw``), the rest zero."""
        channels = max(image.shape[0] for image in images)
        height = math.ceil(max(image.shape[1] for image in images) / size_divisible)
        width = math.ceil(max(image.shape[2] for image in images) / size_divisible)
        shape = (len(images), channels, height * size_divisible, width * size_divisible)
        batch = images[0].new_empty(shape)
        for index, (image, is_raw) in enumerate(zip(images, raw, strict=True)):
            slot = batch[index]  # not unbind's views: autograd refuses in-place writes to those
            c, h, w = image.shape
            if is_raw:
                mean, std = self._statistics(image)
                torch.sub(image, mean, out=slot[:c, :h, :w]).div_(std)
            else:
                slot[:c, :h, :w].copy_(image)
            slot[c:].zero_()
            slot[:c, h:].zero_()
            slot[:c, :h, w:].zero_()
        return batch

    def _drawn_size(self, image: Tensor) -> int | None:
        """The short side ``image`` is resized to, or ``None`` where the resize changes nothing.
        Draws multi-scale training's random size as torchvision's ``resize`` does."""
        if self.training and self._skip_resize:
            return None
        size = self.torch_choice(self.min_size) if self.training else self.min_size[-1]
        if self.fixed_size is not None:
            return size  # resized to the fixed size by torchvision's rule
        height, width = image.shape[-2:]
        scale = min(size / min(height, width), self.max_size / max(height, width))
        return None if scale == 1.0 else size

    def _resize_to(
        self, image: Tensor, size: int, target: Target | None
    ) -> tuple[Tensor, Target | None]:
        """torchvision's resize of ``image`` (and its target's boxes, masks and keypoints) for
        a drawn ``size``."""
        height, width = image.shape[-2:]
        resized, target = _resize_image_and_masks(
            image, size, self.max_size, target, self.fixed_size
        )
        if target is not None:
            new_size = resized.shape[-2:]
            target["boxes"] = resize_boxes(target["boxes"], (height, width), new_size)
            if "keypoints" in target:
                target["keypoints"] = resize_keypoints(
                    target["keypoints"], (height, width), new_size
                )
        return resized, target

    def resize(self, image: Tensor, target: Target | None = None) -> tuple[Tensor, Target | None]:
        if not self._eager():
            return super().resize(image, target)
        size = self._drawn_size(image)
        return (image, target) if size is None else self._resize_to(image, size, target)
