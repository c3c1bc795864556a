"""Export a checkpoint's detector to ONNX:
``python -m qmimic.export ckpt=PATH [format=onnx] [quantize=int8] [output=FILE]``.

The whole detector for one image goes into the graph: input transform, trunk, feature quantizers
(as Div/Sub/Ceil/Clip/Mul), RPN with its NMS, region head with box decoding and per-class NMS
(see :mod:`qmimic.export.runtime` for the input/output contract). The exported file is run with
onnxruntime on a few images and checked against PyTorch before it is put in place.

``quantize=int8`` also writes ``<name>.int8.onnx``: onnxruntime static quantization of every
convolution and fully connected layer (QDQ format, uint8 activations, int8 per-channel weights),
calibrated on training images of the checkpoint's data. Box decoding and NMS stay float.

Modules: :mod:`~qmimic.export.graph` (the exportable one-image module and the ONNX export),
:mod:`~qmimic.export.agreement` (comparing detections with a reference),
:mod:`~qmimic.export.int8` (static int8 quantization), :mod:`~qmimic.export.images` (images to
check and calibrate on), :mod:`~qmimic.export.runtime` (running an exported file with
onnxruntime). The command is :mod:`qmimic.cli.export`.
"""

from __future__ import annotations

from qmimic.export.agreement import (
    BOX_RTOL,
    SCORE_ATOL,
    Agreement,
    ExportMismatchError,
    check_against,
    compare_detections,
)
from qmimic.export.graph import (
    MIN_OPSET,
    PSRoIAlignByRoIAlign,
    SingleImageDetector,
    export_onnx,
    exportable,
)
from qmimic.export.images import data_images, random_images
from qmimic.export.int8 import ImageFeed, quantize_int8

__all__ = [
    "BOX_RTOL",
    "MIN_OPSET",
    "SCORE_ATOL",
    "Agreement",
    "ExportMismatchError",
    "ImageFeed",
    "PSRoIAlignByRoIAlign",
    "SingleImageDetector",
    "check_against",
    "compare_detections",
    "data_images",
    "export_onnx",
    "exportable",
    "quantize_int8",
    "random_images",
]
