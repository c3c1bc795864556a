"""Export a checkpoint's detector to ONNX:
``python -m qmimic.export ckpt=PATH [format=onnx] [quantize=int8] [output=FILE]``.

The command around :mod:`qmimic.deploy`: options, output paths, checking the exported graph
against PyTorch, and writing the files in place only once all are written and checked.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from qmimic.cli import hydra_command
from qmimic.conf import check_complete
from qmimic.deploy.agreement import (
    BOX_RTOL,
    SCORE_ATOL,
    Agreement,
    ExportMismatchError,
    check_against,
)
from qmimic.deploy.graph import export_onnx
from qmimic.deploy.images import data_images, random_images
from qmimic.deploy.int8 import quantize_int8
from qmimic.deploy.runtime import OnnxDetector, metadata_for, write_metadata
from qmimic.errors import UserError
from qmimic.io.checkpoints import load_run
from qmimic.io.results import check_output_folder
from qmimic.log import get_logger
from qmimic.models.detector import TwoStageDetector
from qmimic.models.report import default_input_size

log = get_logger("qmimic.export")

SPLITS = ("train", "val", "test")


def output_paths(cfg: DictConfig) -> tuple[Path, Path | None]:
    """``model.onnx`` (``output=`` or the run directory) and its ``.int8.onnx`` sibling."""
    path = Path(cfg.output).expanduser() if cfg.get("output") else None
    path = path or Path(cfg.paths.output_dir) / "model.onnx"
    if path.suffix != ".onnx":
        raise UserError(f"output={path} must name an .onnx file, e.g. output=model.onnx")
    check_output_folder(path.parent, "output")  # the folder the file goes into
    int8 = path.with_suffix(".int8.onnx") if cfg.quantize == "int8" else None
    for target in (path, int8):
        if target is not None and target.exists():
            raise UserError(f"{target} already exists; pass another output=FILE.onnx or move it")
    return path, int8


def _check_options(cfg: DictConfig) -> None:
    check_complete(cfg, "e.g. python -m qmimic.export ckpt=PATH")
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
    try:
        handle, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    except OSError as exc:
        raise UserError(
            f"cannot write in {final.parent} ({exc.strerror}); pass an output=FILE.onnx in a "
            "folder you can write to"
        ) from None
    os.close(handle)
    stack.callback(Path(name).unlink, missing_ok=True)
    return Path(name)


def _place(temporary: Path, final: Path) -> None:
    if final.exists():  # created by someone else while this export ran
        raise UserError(f"{final} appeared during the export; pass another output=FILE.onnx")
    os.replace(temporary, final)


def _class_names(
    names: tuple[str, ...] | None, datamodule: Any, num_classes: int
) -> tuple[str, ...]:
    names = tuple(names or datamodule.class_names)
    if len(names) + 1 != num_classes:
        raise UserError(
            f"the checkpoint predicts {num_classes - 1} classes but the data names "
            f"{len(names)}; pick the data it was trained on"
        )
    return names


def _load(cfg: DictConfig) -> tuple[TwoStageDetector, Any, tuple[str, ...]]:
    """``cfg.ckpt``'s detector (eval mode), the datamodule of ``cfg.data`` (default: the
    checkpoint's own data config) and the class names the export records."""
    run = load_run(cfg.ckpt)
    data_cfg = cfg.data if cfg.get("data") is not None else OmegaConf.create(run.config["data"])
    datamodule = instantiate(data_cfg.datamodule)
    class_names = _class_names(run.class_names, datamodule, run.num_classes)
    return run.detector.eval(), datamodule, class_names


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
        log.warning("verify.images=0: the export was not checked against PyTorch")
        return model, agreement
    log.info("onnxruntime vs PyTorch: %s", agreement.summary())
    if not agreement.passed:
        raise ExportMismatchError(
            f"the ONNX model differs from PyTorch on {agreement.unmatched} of "
            f"{agreement.compared} top detections (tolerances: score {SCORE_ATOL} absolute, "
            f"boxes {BOX_RTOL} relative); nothing was written. Please report it with the "
            "checkpoint's model config"
        )
    if agreement.compared == 0:
        log.warning(
            "neither model detected anything on the check's images, so only that was "
            "compared; raise verify.images or use verify.split=test"
        )
    return model, agreement


def write_int8(
    model: OnnxDetector, path: Path, datamodule: Any, images: list[Tensor], cfg: DictConfig
) -> None:
    """Quantize the float model to ``path`` and log how its top detections compare, for
    information only: int8 is not expected to match float32 to the float check's tolerances."""
    calibration = data_images(datamodule, "train", cfg.calibration_images)
    count = quantize_int8(model.path, path, calibration)
    write_metadata(path, model.metadata | {"qmimic.precision": "int8"})
    agreement = check_against(
        model, OnnxDetector(path, threads=cfg.threads), images, cfg.verify.top_k, 0.05, 0.05
    )
    log.info(
        "int8 (calibrated on %d train images) vs float32, for information, within score "
        "0.05 and boxes 5%%: %s",
        count,
        agreement.summary(),
    )


def _write_in_place(
    detector: TwoStageDetector,
    paths: tuple[Path, Path | None],
    datamodule: Any,
    images: list[Tensor],
    metadata: dict[str, str],
    cfg: DictConfig,
) -> Agreement:
    """Write the float model (and the int8 one where ``paths[1]`` is set) to temporary files
    beside their targets, and move them to ``paths`` only once all are written and checked."""
    float_path, int8_path = paths
    float_path.parent.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        written = _temporary(float_path, stack)
        model, agreement = write_checked(detector, written, images, metadata, cfg)
        quantized = None if int8_path is None else _temporary(int8_path, stack)
        if quantized is not None:
            write_int8(model, quantized, datamodule, images, cfg)
        _place(written, float_path)
        if quantized is not None:
            _place(quantized, int8_path)
    return agreement


def export(cfg: DictConfig) -> dict[str, Any]:
    """Write (and check) the ONNX model(s) of ``cfg.ckpt``; returns what was written."""
    _check_options(cfg)
    float_path, int8_path = output_paths(cfg)
    torch.manual_seed(cfg.seed)
    detector, datamodule, class_names = _load(cfg)
    input_size = default_input_size(detector)
    if cfg.verify.split != "random" or int8_path is not None:
        datamodule.prepare_data()
    images = _check_images(cfg, datamodule, input_size)
    source = str(Path(cfg.ckpt).expanduser().resolve())
    metadata = metadata_for(class_names, input_size, source, "float32")
    paths = (float_path, int8_path)
    agreement = _write_in_place(detector, paths, datamodule, images, metadata, cfg)
    for path in paths:
        if path is not None:
            log.info("wrote %s (%.2f MB)", path, path.stat().st_size / 1e6)
    return {"onnx": float_path, "int8": int8_path, "agreement": agreement}


@hydra_command("export")
def main(cfg: DictConfig) -> None:
    export(cfg)
