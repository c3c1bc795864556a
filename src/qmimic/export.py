"""Export a checkpoint's detector to ONNX:
``python -m qmimic.export ckpt=PATH [format=onnx] [quantize=int8] [output=FILE]``.

The whole detector for one image goes into the graph: input transform, trunk, feature quantizers
(as Div/Sub/Ceil/Clip/Mul), RPN with its NMS, region head with box decoding and per-class NMS
(see :mod:`qmimic.onnx_model` for the input/output contract). The exported file is run with
onnxruntime on a few images and checked against PyTorch before it is put in place.

``quantize=int8`` also writes ``<name>.int8.onnx``: onnxruntime static quantization of every
convolution and fully connected layer (QDQ format, uint8 activations, int8 per-channel weights),
calibrated on training images of the checkpoint's data. Box decoding and NMS stay float.
"""

from __future__ import annotations

import copy
import itertools
import logging
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import Tensor, nn
from torchvision.ops import PSRoIAlign, roi_align

from qmimic.checkpoints import load_checkpoint
from qmimic.errors import UserError, exit_on_user_error
from qmimic.models.detector import TwoStageDetector
from qmimic.models.report import default_input_size
from qmimic.modules.from_checkpoint import detector_from_checkpoint
from qmimic.onnx_model import INPUT, OUTPUTS, OnnxDetector, metadata_for, write_metadata
from qmimic.train import CONFIG_DIR, missing_keys

# torchvision's RoIAlign needs opset 16 to export aligned=True exactly (half_pixel coordinates).
MIN_OPSET = 16
SCORE_ATOL = 1e-4
BOX_RTOL = 1e-3
SPLITS = ("train", "val", "test")


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
    module. The original is left untouched (it is the reference the export is checked against)."""
    copied = copy.deepcopy(detector).eval()
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


# ---------------------------------------------------------------------------- checking


@dataclass
class Agreement:
    """How well a model's top detections match a reference's, over some images.

    ``compared`` top detections were looked up (those of the reference in the other model and
    the other way round); ``unmatched`` found no detection of the same label within the
    tolerances; the maxima are over the closest same-label detection of each one compared.
    """

    images: int = 0
    compared: int = 0
    unmatched: int = 0
    max_score_diff: float = 0.0
    max_box_diff: float = 0.0

    @property
    def passed(self) -> bool:
        return self.unmatched == 0

    def add(self, other: Agreement) -> Agreement:
        return Agreement(
            self.images + other.images,
            self.compared + other.compared,
            self.unmatched + other.unmatched,
            max(self.max_score_diff, other.max_score_diff),
            max(self.max_box_diff, other.max_box_diff),
        )

    def summary(self) -> str:
        return (
            f"{self.images} images, {self.compared} top detections compared, "
            f"{self.unmatched} unmatched, max |score diff| {self.max_score_diff:.2e}, "
            f"max box diff {self.max_box_diff:.2e} (relative)"
        )


def _lookup(
    detections: dict[str, Tensor],
    others: dict[str, Tensor],
    top_k: int,
    score_atol: float,
    box_rtol: float,
) -> Agreement:
    """Look each of the ``top_k`` best ``detections`` up among all of ``others``."""
    result = Agreement(compared=min(top_k, len(detections["scores"])))
    for index in range(result.compared):
        box, score = detections["boxes"][index], detections["scores"][index]
        same = others["labels"] == detections["labels"][index]
        if not same.any():
            result.unmatched += 1
            continue
        # relative to the coordinate, with 1 pixel as the floor for coordinates near 0
        box_diff = ((others["boxes"][same] - box).abs() / box.abs().clamp(min=1)).amax(dim=1)
        score_diff = (others["scores"][same] - score).abs()
        closest = torch.argmin(torch.maximum(box_diff / box_rtol, score_diff / score_atol))
        result.max_score_diff = max(result.max_score_diff, float(score_diff[closest]))
        result.max_box_diff = max(result.max_box_diff, float(box_diff[closest]))
        if score_diff[closest] > score_atol or box_diff[closest] > box_rtol:
            result.unmatched += 1
    return result


def compare_detections(
    reference: dict[str, Tensor],
    candidate: dict[str, Tensor],
    top_k: int = 10,
    score_atol: float = SCORE_ATOL,
    box_rtol: float = BOX_RTOL,
) -> Agreement:
    """Compare two models' detections of one image (``boxes`` [D, 4], ``scores`` [D] sorted
    decreasingly, ``labels`` [D]), both ways: each top-``k`` detection of one must have a
    detection of the same label in the other, with ``|score diff| <= score_atol`` and every box
    coordinate within ``box_rtol`` relative. Matching by value rather than by rank keeps two
    detections whose scores differ by less than the tolerance from failing by swapping places.
    """
    forward = _lookup(reference, candidate, top_k, score_atol, box_rtol)
    backward = _lookup(candidate, reference, top_k, score_atol, box_rtol)
    return forward.add(backward).add(Agreement(images=1))


def check_against(
    reference: TwoStageDetector | OnnxDetector,
    model: OnnxDetector,
    images: Iterable[Tensor],
    top_k: int = 10,
    score_atol: float = SCORE_ATOL,
    box_rtol: float = BOX_RTOL,
) -> Agreement:
    """:func:`compare_detections` of ``model`` against ``reference`` over ``images``."""
    total = Agreement()
    for image in images:
        if isinstance(reference, OnnxDetector):
            expected = reference.predict(image)
        else:
            with torch.no_grad():
                expected = reference.eval().predict([image])[0]
        found = model.predict(image)
        total = total.add(compare_detections(expected, found, top_k, score_atol, box_rtol))
    return total


class ExportMismatchError(UserError):
    """The exported model does not reproduce the PyTorch detector; nothing was written."""


# ---------------------------------------------------------------------------- int8


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


# ---------------------------------------------------------------------------- the command


def data_images(datamodule: Any, split: str, count: int) -> Iterator[Tensor]:
    """The first ``count`` images ``[3, H, W]`` of a split's loader (train: shuffled, flipped)."""
    loader = getattr(datamodule, f"{split}_dataloader")()
    return itertools.islice((image for images, _ in loader for image in images), count)


def random_images(size: tuple[int, int], count: int, seed: int = 0) -> Iterator[Tensor]:
    """``count`` uniform random images; every second one is 3/4 as high, so that a check also
    covers the graph's resizing of images of another shape."""
    generator = torch.Generator().manual_seed(seed)
    height, width = size
    for index in range(count):
        rows = height if index % 2 == 0 else max(32, height * 3 // 4)
        yield torch.rand(3, rows, width, generator=generator)


def output_paths(cfg: DictConfig) -> tuple[Path, Path | None]:
    """``model.onnx`` (``output=`` or the run directory) and its ``.int8.onnx`` sibling."""
    path = Path(cfg.output).expanduser() if cfg.get("output") else None
    path = path or Path(cfg.paths.output_dir) / "model.onnx"
    if path.suffix != ".onnx":
        raise UserError(f"output={path} must name an .onnx file, e.g. output=model.onnx")
    int8 = path.with_suffix(".int8.onnx") if cfg.quantize == "int8" else None
    for target in (path, int8):
        if target is not None and target.exists():
            raise UserError(f"{target} already exists; pass another output=FILE.onnx or move it")
    return path, int8


def _check_options(cfg: DictConfig) -> None:
    missing = missing_keys(cfg)
    if missing:
        raise UserError(f"{', '.join(missing)} unset; e.g. python -m qmimic.export ckpt=PATH")
    if cfg.format != "onnx":
        raise UserError(f"format={cfg.format} is not supported; use format=onnx")
    if cfg.quantize not in (None, "int8"):
        raise UserError(f"quantize={cfg.quantize} is not supported; use quantize=int8 or omit it")
    if cfg.verify.split not in (*SPLITS, "random"):
        raise UserError(f"verify.split={cfg.verify.split}; use one of {', '.join(SPLITS)}, random")
    if cfg.verify.images < 0 or cfg.calibration_images < 1:
        raise UserError("verify.images must be >= 0 (0 skips the check), calibration_images >= 1")


def _temporary(final: Path, stack: ExitStack) -> Path:
    """An empty file beside ``final``, removed when ``stack`` closes unless renamed."""
    handle, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(handle)
    stack.callback(Path(name).unlink, missing_ok=True)
    return Path(name)


def _place(temporary: Path, final: Path) -> None:
    if final.exists():  # created by someone else while this export ran
        raise UserError(f"{final} appeared during the export; pass another output=FILE.onnx")
    os.replace(temporary, final)


def _class_names(checkpoint: dict, datamodule: Any, num_classes: int) -> tuple[str, ...]:
    names = tuple(checkpoint.get("qmimic_class_names") or datamodule.class_names)
    if len(names) + 1 != num_classes:
        raise UserError(
            f"the checkpoint predicts {num_classes - 1} classes but the data names "
            f"{len(names)}; pick the data it was trained on"
        )
    return names


def _check_images(cfg: DictConfig, datamodule: Any, input_size: tuple[int, int]) -> list[Tensor]:
    if cfg.verify.split == "random":
        return list(random_images(input_size, cfg.verify.images, cfg.seed))
    return list(data_images(datamodule, cfg.verify.split, cfg.verify.images))


def write_checked(
    detector: TwoStageDetector,
    path: Path,
    images: list[Tensor],
    metadata: dict[str, str],
    cfg: DictConfig,
) -> tuple[OnnxDetector, Agreement]:
    """Export ``detector`` to ``path`` and check it on ``images`` with onnxruntime.

    Raises:
        ExportMismatchError: a top detection differs beyond :data:`SCORE_ATOL`/:data:`BOX_RTOL`.
    """
    example = next(random_images(default_input_size(detector), 1, cfg.seed))
    export_onnx(detector, path, example, cfg.opset)
    write_metadata(path, metadata)
    model = OnnxDetector(path, threads=cfg.threads)
    agreement = check_against(detector, model, images, cfg.verify.top_k)
    if not images:
        print("warning: verify.images=0, the export was not checked against PyTorch", flush=True)
        return model, agreement
    print(f"onnxruntime vs PyTorch: {agreement.summary()}", flush=True)
    if not agreement.passed:
        raise ExportMismatchError(
            f"the ONNX model differs from PyTorch on {agreement.unmatched} of "
            f"{agreement.compared} top detections (tolerances: score {SCORE_ATOL} absolute, "
            f"boxes {BOX_RTOL} relative); nothing was written. Please report it with the "
            "checkpoint's model config"
        )
    if agreement.compared == 0:
        print(
            "warning: neither model detected anything on the check's images, so only that was "
            "compared; raise verify.images or use verify.split=test",
            flush=True,
        )
    return model, agreement


def write_int8(
    model: OnnxDetector, path: Path, datamodule: Any, images: list[Tensor], cfg: DictConfig
) -> None:
    """Quantize the float model to ``path`` and print how its top detections compare, for
    information only: int8 is not expected to match float32 to the float check's tolerances."""
    calibration = data_images(datamodule, "train", cfg.calibration_images)
    count = quantize_int8(model.path, path, calibration)
    write_metadata(path, model.metadata | {"qmimic.precision": "int8"})
    agreement = check_against(
        model, OnnxDetector(path, threads=cfg.threads), images, cfg.verify.top_k, 0.05, 0.05
    )
    print(
        f"int8 (calibrated on {count} train images) vs float32, for information, within score "
        f"0.05 and boxes 5%: {agreement.summary()}",
        flush=True,
    )


def export(cfg: DictConfig) -> dict[str, Any]:
    """Write (and check) the ONNX model(s) of ``cfg.ckpt``; returns what was written."""
    _check_options(cfg)
    float_path, int8_path = output_paths(cfg)
    torch.manual_seed(cfg.seed)
    checkpoint = load_checkpoint(cfg.ckpt)
    detector, saved = detector_from_checkpoint(checkpoint, cfg.ckpt)
    detector.eval()
    data_cfg = cfg.data if cfg.get("data") is not None else OmegaConf.create(saved["data"])
    datamodule = instantiate(data_cfg.datamodule)
    class_names = _class_names(checkpoint, datamodule, saved["model"]["num_classes"])
    input_size = default_input_size(detector)
    if cfg.verify.split != "random" or int8_path is not None:
        datamodule.prepare_data()
    images = _check_images(cfg, datamodule, input_size)
    source = str(Path(cfg.ckpt).expanduser().resolve())
    metadata = metadata_for(class_names, input_size, source, "float32")
    float_path.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:  # temporary files until everything is written and checked
        written = _temporary(float_path, stack)
        model, agreement = write_checked(detector, written, images, metadata, cfg)
        quantized = None if int8_path is None else _temporary(int8_path, stack)
        if quantized is not None:
            write_int8(model, quantized, datamodule, images, cfg)
        _place(written, float_path)
        if quantized is not None:
            _place(quantized, int8_path)
    for path in (float_path, int8_path):
        if path is not None:
            print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return {"onnx": float_path, "int8": int8_path, "agreement": agreement}


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    export(cfg)


if __name__ == "__main__":
    main()
