"""Running a detector exported by :mod:`qmimic.deploy` with onnxruntime, as the PyTorch one runs.

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
        threads: onnxruntime intra-op threads; 0 lets onnxruntime choose (one per core).

    Attributes:
        metadata: the file's ``metadata_props`` (see :data:`METADATA`).
        class_names: names of labels 1..C from the file's metadata, or ``None``.
        input_size: ``(H, W)`` the model was exported for, or ``None``.

    Raises:
        UserError: the file is missing, is not a readable ONNX model, or lacks the
            ``image -> boxes, scores, labels`` signature of an exported qmimic detector.
    """

    def __init__(self, path: str | Path, threads: int = 0):
        path = Path(path).expanduser()
        if not path.is_file():
            raise UserError(
                f"ONNX model not found: {path}\nExport one with: python -m qmimic.export ckpt=..."
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own types for corrupt or foreign files
            raise UserError(f"cannot load ONNX model {path}: {exc}") from None
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [INPUT] or outputs != list(OUTPUTS):
            raise UserError(
                f"{path} takes {inputs} and returns {outputs}, not {INPUT} -> "
                f"{', '.join(OUTPUTS)}; pass a model written by qmimic.export"
            )
        self.path = path
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.class_names = _json_tuple(self.metadata.get(CLASS_NAMES))
        self.input_size = _json_tuple(self.metadata.get(INPUT_SIZE))

    def predict(self, image: Tensor) -> dict[str, Tensor]:
        """Detections for one float ``[3, H, W]`` image in [0, 1]: ``boxes`` [D, 4] (input-image
        pixels), ``scores`` [D], ``labels`` [D] int64, as ``TwoStageDetector.predict`` gives."""
        feed = {INPUT: image.detach().to("cpu", torch.float32).contiguous().numpy()}
        boxes, scores, labels = self.session.run(list(OUTPUTS), feed)
        return {
            "boxes": torch.from_numpy(boxes),
            "scores": torch.from_numpy(scores),
            "labels": torch.from_numpy(labels),
        }


def _json_tuple(text: str | None) -> tuple | None:
    return None if text is None else tuple(json.loads(text))
