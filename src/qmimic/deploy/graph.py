"""The detector as an ONNX graph: a one-image module of exportable ops, and its export."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.ops import PSRoIAlign, roi_align

from qmimic.deploy.runtime import INPUT, OUTPUTS
from qmimic.errors import UserError
from qmimic.models.detector import TwoStageDetector
from qmimic.models.inference import for_inference

# torchvision's RoIAlign needs opset 16 to export aligned=True exactly (half_pixel coordinates).
MIN_OPSET = 16


class SingleImageDetector(nn.Module):
    """``TwoStageDetector.predict`` for one image as a function of tensors, for tracing:
    ``image [3, H, W]`` in [0, 1] -> ``boxes [D, 4]``, ``scores [D]``, ``labels [D]``."""

    def __init__(self, detector: TwoStageDetector):
        super().__init__()
        self.detector = detector

    def forward(self, image: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        detections = self.detector.predict([image])[0]
        return detections["boxes"], detections["scores"], detections["labels"]


class PSRoIAlignByRoIAlign(nn.Module):
    """``torchvision.ops.ps_roi_align`` from ops ONNX has: same inputs, same output.

    ONNX has no position-sensitive RoIAlign, so R-FCN's pooling is rebuilt from ``RoiAlign``:
    pool every channel on the ``k x k`` grid, then keep for output channel ``c`` and bin ``b`` the
    value of input channel ``c * k * k + b`` at bin ``b`` (the diagonal, taken with an identity
    mask, which exports as plain Mul/ReduceSum). torchvision's position-sensitive kernel uses the
    aligned (half-pixel) coordinates and sampling of ``roi_align(aligned=True)``, so the result is
    equal, at ``k * k`` times the pooling work.

    Input ``[B, C * k * k, H, W]`` and boxes as ``roi_align`` takes them; output ``[R, C, k, k]``.
    """

    def __init__(self, pool: PSRoIAlign):
        super().__init__()
        size = pool.output_size
        self.output_size = (size, size) if isinstance(size, int) else tuple(size)
        self.spatial_scale = pool.spatial_scale
        self.sampling_ratio = pool.sampling_ratio

    def forward(self, features: Tensor, boxes: Tensor | list[Tensor]) -> Tensor:
        height, width = self.output_size
        bins = height * width
        pooled = roi_align(
            features,
            boxes,
            self.output_size,
            spatial_scale=self.spatial_scale,
            sampling_ratio=self.sampling_ratio,
            aligned=True,
        )
        grouped = pooled.reshape(pooled.shape[0], -1, bins, bins)
        diagonal = torch.eye(bins, dtype=pooled.dtype, device=pooled.device)
        return (grouped * diagonal).sum(dim=-1).reshape(pooled.shape[0], -1, height, width)


def exportable(detector: TwoStageDetector) -> SingleImageDetector:
    """An eval-mode copy of ``detector`` made of ops the ONNX exporter knows, as one-image
    module, BatchNorm folded into the convolutions. The original is left untouched (it is the
    reference the export is checked against)."""
    copied = for_inference(copy.deepcopy(detector))
    for name, module in list(copied.named_modules()):
        if isinstance(module, PSRoIAlign):
            parent_name, _, attr = name.rpartition(".")
            setattr(copied.get_submodule(parent_name), attr, PSRoIAlignByRoIAlign(module))
    return SingleImageDetector(copied).eval()


def export_onnx(detector: TwoStageDetector, path: Path, example: Tensor, opset: int = 17) -> None:
    """Trace ``detector`` on ``example`` (``[3, H, W]``) and write the ONNX graph to ``path``.

    Image height and width are dynamic axes, as is the number of detections ``D``.
    """
    if opset < MIN_OPSET:
        raise UserError(f"opset={opset} is too old: RoIAlign needs opset >= {MIN_OPSET}")
    detections = {0: "detections"}
    with warnings.catch_warnings(), torch.no_grad():
        # Tracing torchvision's transform and post-processing warns about size-dependent
        # branches and indexing it writes to trace correctly; the export is checked numerically
        # against PyTorch right after, which is the test that counts.
        warnings.simplefilter("ignore")
        # dynamo=False: the torch.export-based exporter (the default) needs onnxscript and cannot
        # express NMS's data-dependent shapes; the TorchScript-based exporter has torchvision's
        # RoIAlign and NMS symbolics, so post-processing stays in the graph.
        torch.onnx.export(
            exportable(detector),
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT],
            output_names=list(OUTPUTS),
            dynamic_axes={INPUT: {1: "height", 2: "width"}} | dict.fromkeys(OUTPUTS, detections),
        )
