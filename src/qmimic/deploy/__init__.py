"""Export a checkpoint's detector to ONNX:
``python -m qmimic.export ckpt=PATH [format=onnx] [quantize=int8] [output=FILE]``.

The whole detector for one image goes into the graph: input transform, trunk, feature quantizers
(as Div/Sub/Ceil/Clip/Mul), RPN with its NMS, region head with box decoding and per-class NMS
(see :mod:`qmimic.deploy.runtime` for the input/output contract). The exported file is run with
onnxruntime on a few images and checked against PyTorch before it is put in place.

``quantize=int8`` also writes ``<name>.int8.onnx``: onnxruntime static quantization of every
convolution and fully connected layer (QDQ format, uint8 activations, int8 per-channel weights),
calibrated on training images of the checkpoint's data. Box decoding and NMS stay float.

Modules: :mod:`~qmimic.deploy.graph` (the exportable one-image module and the ONNX export),
:mod:`~qmimic.deploy.agreement` (comparing detections with a reference),
:mod:`~qmimic.deploy.int8` (static int8 quantization), :mod:`~qmimic.deploy.images` (images to
check and calibrate on), :mod:`~qmimic.deploy.runtime` (running an exported file with
onnxruntime), :mod:`~qmimic.deploy.memory` (the process setting ``qmimic.predict`` runs
under). The command is :mod:`qmimic.cli.export`.
"""

from __future__ import annotations

from qmimic.deploy.agreement import (
    BOX_RTOL,
    SCORE_ATOL,
    Agreement,
    ExportMismatchError,
    check_against,
    compare_detections,
)
from qmimic.deploy.graph import (
    MIN_OPSET,
    PSRoIAlignByRoIAlign,
    SingleImageDetector,
    export_onnx,
    exportable,
)
from qmimic.deploy.images import data_images, random_images
from qmimic.deploy.int8 import ImageFeed, quantize_int8

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
