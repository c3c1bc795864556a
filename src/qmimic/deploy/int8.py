"""Static int8 quantization of an exported model with onnxruntime, calibrated on images."""

from __future__ import annotations

import itertools
import logging
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import Tensor

from qmimic.deploy.runtime import INPUT
from qmimic.errors import UserError


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


class ImageFeed(CalibrationDataReader):
    """onnxruntime's calibration input: one run per image ``[3, H, W]`` of ``images``."""

    def __init__(self, images: Iterable[Tensor]):
        self._images = iter(images)
        self.count = 0

    def get_next(self) -> dict[str, Any] | None:
        image = next(self._images, None)
        if image is None:
            return None
        self.count += 1
        return {INPUT: image.to("cpu", torch.float32).contiguous().numpy()}


def quantize_int8(float_path: Path, int8_path: Path, images: Iterable[Tensor]) -> int:
    """Write an int8 copy of the ONNX model at ``float_path`` to ``int8_path``, with activation
    ranges calibrated (min/max) on ``images``; returns how many images calibrated it.

    Convolutions and fully connected layers are quantized (QDQ format: uint8 activations, int8
    per-channel weights); box decoding, NMS and the feature quantizers' rounding stay float.
    QDQ with uint8 activations is onnxruntime's recommended layout on x86 CPUs, which fuses each
    QuantizeLinear/DequantizeLinear pair with its Conv into one integer kernel at load time;
    measured on the demo's width-1/4 detector at 192 px it ran as fast as the QOperator format
    and clearly faster than QDQ with int8 activations.
    """
    images = iter(images)
    first = next(images, None)
    if first is None:
        raise UserError("no images to calibrate the int8 model on; the data's train split is empty")
    feed = ImageFeed(itertools.chain([first], images))
    with tempfile.TemporaryDirectory(prefix="qmimic-int8-") as work:
        prepared = Path(work) / "prepared.onnx"
        # Symbolic shape inference cannot follow NMS's data-dependent shapes (it stops with
        # "Incomplete symbolic shape inference"); ONNX's own inference is enough for the
        # quantizer. The pass also folds the exporter's aliased initializers (Identity nodes),
        # which the quantizer could not read as convolution biases.
        quant_pre_process(str(float_path), str(prepared), skip_symbolic_shape=True)
        with _quiet_root_logger():  # the quantizer logs one INFO line per copied bias
            quantize_static(
                str(prepared),
                str(int8_path),
                feed,
                quant_format=QuantFormat.QDQ,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=["Conv", "Gemm"],
            )
    return feed.count
