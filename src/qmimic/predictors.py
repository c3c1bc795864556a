"""Detectors behind one call, ``predict(image)``: a checkpoint's run with PyTorch, or an
exported ONNX model with onnxruntime or OpenVINO; all give the same detections (float32)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from qmimic.errors import UserError
from qmimic.io.checkpoints import load_run
from qmimic.models.inference import for_inference


class Predictor(Protocol):
    """One-image detection, as ``TwoStageDetector.predict`` gives it for a batch of one."""

    class_names: tuple[str, ...] | None

    def predict(self, image: Tensor) -> dict[str, Tensor]: ...


class CheckpointPredictor:
    """The detector of a qmimic checkpoint (see :func:`~qmimic.io.checkpoints.load_run`), run
    with PyTorch on the CPU as :func:`~qmimic.models.inference.for_inference` prepares it
    (BatchNorm folded, region pooling by gather); ``class_names`` as the run names them."""

    def __init__(self, path: str | Path):
        run = load_run(path)
        self.detector = for_inference(run.detector)
        self.class_names = run.class_names

    @torch.inference_mode()
    def predict(self, image: Tensor) -> dict[str, Tensor]:
        return self.detector.predict([image])[0]


def load_predictor(path: str, threads: int = 0, runtime: str = "onnxruntime") -> Predictor:
    """An :class:`~qmimic.deploy.runtime.OnnxDetector` run by ``runtime`` (``onnxruntime`` or
    ``openvino``) for ``.onnx`` files, else a :class:`CheckpointPredictor` (PyTorch)."""
    if Path(path).suffix.lower() != ".onnx":
        return CheckpointPredictor(path)
    try:
        from qmimic.deploy.runtime import OnnxDetector
    except ImportError as exc:
        raise UserError(
            f"running .onnx models needs onnxruntime ({exc}); pip install 'qmimic[export]'"
        ) from None
    return OnnxDetector(path, threads=threads, runtime=runtime)


def above_threshold(detections: dict[str, Tensor], threshold: float) -> dict[str, Tensor]:
    """The detections scoring at least ``threshold`` (every field filtered alike)."""
    keep = detections["scores"] >= threshold
    return {k: v[keep] for k, v in detections.items()}
