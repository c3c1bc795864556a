"""Running a detector exported by :mod:`qmimic.deploy` with onnxruntime or OpenVINO, as the
PyTorch one runs.

The exported graph is the whole detector for one image, post-processing included:

- input ``image``: float32 ``[3, H, W]``, RGB in [0, 1], any ``H`` and ``W`` (the graph resizes
  and normalises exactly as the detector's input transform does);
- outputs ``boxes`` float32 ``[D, 4]`` xyxy in input-image pixels, ``scores`` float32 ``[D]`` and
  ``labels`` int64 ``[D]`` (1..C; 0 is background and never returned), by decreasing score.

The file's ``metadata_props`` carry what a caller needs beside the graph (see :data:`METADATA`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import Tensor

from qmimic.errors import UserError

INPUT = "image"
OUTPUTS = ("boxes", "scores", "labels")
CLASS_NAMES = "qmimic.class_names"
INPUT_SIZE = "qmimic.input_size"
METADATA = {
    CLASS_NAMES: "JSON list of class names, label 1 first (background has no name)",
    INPUT_SIZE: "JSON [H, W]: an image size the detector's transform keeps as is",
    "qmimic.checkpoint": "the checkpoint the model was exported from",
    "qmimic.precision": "float32, or int8 (onnxruntime static quantization)",
}
RUNTIMES = ("onnxruntime", "openvino")


def write_metadata(path: str | Path, properties: Mapping[str, str]) -> None:
    """Set ``properties`` in the ``metadata_props`` of the ONNX file at ``path`` (in place)."""
    model = onnx.load(str(path))
    existing = {p.key: p for p in model.metadata_props}
    for key, value in properties.items():
        if key in existing:
            existing[key].value = value
        else:
            model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


def metadata_for(
    class_names: tuple[str, ...], input_size: tuple[int, int], checkpoint: str, precision: str
) -> dict[str, str]:
    """The :data:`METADATA` entries of one exported file."""
    return {
        CLASS_NAMES: json.dumps(list(class_names)),
        INPUT_SIZE: json.dumps(list(input_size)),
        "qmimic.checkpoint": checkpoint,
        "qmimic.precision": precision,
    }


class OnnxDetector:
    """An exported detector behind the PyTorch detector's one-image ``predict``.

    Args:
        path: an ``.onnx`` file written by ``qmimic.export`` (float32 or int8).
        threads: the runtime's intra-op threads; 0 lets it choose (one per core).
        runtime: ``"onnxruntime"`` or ``"openvino"`` (the ``openvino`` package, CPU device,
            float32 inference precision, so that a float32 file gives PyTorch's detections).
            A process that has run OpenVINO should not fork afterwards: DataLoader workers
            forked after it segfaulted the process in qmimic's benchmark. Start such workers
            first, or give them the ``spawn`` start method.

    Attributes:
        metadata: the file's ``metadata_props`` (see :data:`METADATA`).
        class_names: names of labels 1..C from the file's metadata, or ``None``.
        input_size: ``(H, W)`` the model was exported for, or ``None``.

    Raises:
        UserError: an unknown runtime or one not installed; the file is missing, is not a
            readable ONNX model, or lacks the ``image -> boxes, scores, labels`` signature of an
            exported qmimic detector.
    """

    def __init__(self, path: str | Path, threads: int = 0, runtime: str = "onnxruntime"):
        path = Path(path).expanduser()
        if runtime not in RUNTIMES:
            raise UserError(f"runtime={runtime} is not supported; use one of {', '.join(RUNTIMES)}")
        if not path.is_file():
            raise UserError(
                f"ONNX model not found: {path}\nExport one with: python -m qmimic.export ckpt=..."
            )
        opened = _OpenVINOSession if runtime == "openvino" else _OnnxruntimeSession
        try:
            self.session = opened(path, threads)
        except ImportError as exc:
            raise UserError(
                f"runtime={runtime} needs the {runtime} package ({exc}); "
                f"pip install 'qmimic[{runtime}]'"
            ) from None
        except Exception as exc:  # each runtime raises its own types for corrupt or foreign files
            raise UserError(f"cannot load ONNX model {path} with {runtime}: {exc}") from None
        inputs, outputs = self.session.inputs, self.session.outputs
        if inputs != [INPUT] or outputs != list(OUTPUTS):
            raise UserError(
                f"{path} takes {inputs} and returns {outputs}, not {INPUT} -> "
                f"{', '.join(OUTPUTS)}; pass a model written by qmimic.export"
            )
        self.path = path
        self.runtime = runtime
        self.metadata = self.session.metadata
        self.class_names = _json_tuple(self.metadata.get(CLASS_NAMES))
        self.input_size = _json_tuple(self.metadata.get(INPUT_SIZE))

    def predict(self, image: Tensor) -> dict[str, Tensor]:
        """Detections for one float ``[3, H, W]`` image in [0, 1]: ``boxes`` [D, 4] (input-image
        pixels), ``scores`` [D], ``labels`` [D] int64, as ``TwoStageDetector.predict`` gives."""
        boxes, scores, labels = self.session.run(
            image.detach().to("cpu", torch.float32).contiguous().numpy()
        )
        return {
            "boxes": torch.from_numpy(boxes),
            "scores": torch.from_numpy(scores),
            "labels": torch.from_numpy(labels).to(torch.int64),
        }


class _OnnxruntimeSession:
    """An onnxruntime CPU session: input and output names, metadata, ``run(image)``."""

    def __init__(self, path: Path, threads: int):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, image: np.ndarray) -> list[np.ndarray]:
        return self.session.run(list(OUTPUTS), {INPUT: image})


class _OpenVINOSession:
    """An OpenVINO CPU model compiled from the ONNX file for latency, float32 precision (on
    CPUs with bf16 units OpenVINO would otherwise compute in bf16 and move the scores)."""

    def __init__(self, path: Path, threads: int):
        import openvino as ov  # optional: the ``openvino`` extra

        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        core = ov.Core()
        model = core.read_model(str(path))
        self.inputs = [port.get_any_name() for port in model.inputs]
        self.outputs = [port.get_any_name() for port in model.outputs]
        self.request = core.compile_model(model, "CPU", config).create_infer_request()
        # OpenVINO keeps ONNX metadata_props out of its model: read them from the file itself
        stored = onnx.load(str(path), load_external_data=False).metadata_props
        self.metadata = {p.key: p.value for p in stored}

    def run(self, image: np.ndarray) -> list[np.ndarray]:
        self.request.infer({INPUT: image})
        # copies: the request reuses its output buffers on the next call
        return [self.request.get_tensor(name).data.copy() for name in OUTPUTS]


def _json_tuple(text: str | None) -> tuple | None:
    return None if text is None else tuple(json.loads(text))
