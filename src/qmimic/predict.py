"""Detect objects in image files:
``python -m qmimic.predict ckpt=PATH input=DIR_OR_GLOB [output=DIR] [score_threshold=0.5]``.

``ckpt`` is a qmimic ``.ckpt`` (run with PyTorch) or an ``.onnx`` file from ``qmimic.export``
(run with onnxruntime); both give the same detections. For every image found (jpg, jpeg, png,
bmp; a folder's files or a glob's matches, sorted) it writes ``<output>/<stem>.jpg`` with the
detections drawn, and one ``<output>/detections.json`` mapping each image's name to its list of
``{label, class_name, score, box: [x1, y1, x2, y2]}`` (input-image pixels). Images in
subfolders of a glob keep their relative folder under ``output``. Unreadable images are
reported and skipped.
"""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path
from typing import Any, Protocol

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor
from torchvision.transforms.functional import to_pil_image
from torchvision.utils import draw_bounding_boxes
from tqdm import tqdm

from qmimic.checkpoints import load_checkpoint
from qmimic.data.voc import BadSampleError, load_rgb_image
from qmimic.errors import UserError, exit_on_user_error
from qmimic.modules.from_checkpoint import detector_from_checkpoint
from qmimic.results import write_json
from qmimic.train import CONFIG_DIR, missing_keys

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# One colour per class (cycled), so that a class keeps its colour across images.
COLOURS = ("red", "lime", "blue", "yellow", "magenta", "cyan", "orange", "white", "purple", "pink")


class Predictor(Protocol):
    """One-image detection, as ``TwoStageDetector.predict`` gives it for a batch of one."""

    class_names: tuple[str, ...] | None

    def predict(self, image: Tensor) -> dict[str, Tensor]: ...


class CheckpointPredictor:
    """The detector of a qmimic checkpoint, run with PyTorch on the CPU.

    Class names come from the checkpoint (``qmimic_class_names``, written since training stores
    them), else from the dataset its config names; ``None`` when neither has them.
    """

    def __init__(self, path: str | Path):
        checkpoint = load_checkpoint(path)
        self.detector, config = detector_from_checkpoint(checkpoint, path)
        self.detector.eval()
        names = checkpoint.get("qmimic_class_names") or _config_class_names(config)
        self.class_names = None if names is None else tuple(names)

    @torch.inference_mode()
    def predict(self, image: Tensor) -> dict[str, Tensor]:
        return self.detector.predict([image])[0]


def _config_class_names(config: dict) -> tuple[str, ...] | None:
    """Class names of the dataset source in a run config (sources only name classes on
    construction; nothing is read from disk)."""
    source = config.get("data", {}).get("datamodule", {}).get("source")
    return None if source is None else tuple(instantiate(source).class_names)


def load_predictor(path: str, threads: int = 0) -> Predictor:
    """An :class:`~qmimic.onnx_model.OnnxDetector` for ``.onnx`` files, else a
    :class:`CheckpointPredictor`."""
    if Path(path).suffix.lower() != ".onnx":
        return CheckpointPredictor(path)
    try:
        from qmimic.onnx_model import OnnxDetector
    except ImportError as exc:
        raise UserError(
            f"running .onnx models needs onnxruntime ({exc}); pip install 'qmimic[export]'"
        ) from None
    return OnnxDetector(path, threads=threads)


def find_images(pattern: str) -> list[Path]:
    """Image files (:data:`IMAGE_SUFFIXES`, any case) in a folder or matching a glob, sorted.

    Raises:
        UserError: nothing found.
    """
    folder = Path(pattern).expanduser()
    if folder.is_dir():
        candidates = [str(p) for p in folder.iterdir()]
    else:
        candidates = glob.glob(os.path.expanduser(pattern), recursive=True)
    images = sorted(Path(p) for p in candidates if Path(p).suffix.lower() in IMAGE_SUFFIXES)
    images = [p for p in images if p.is_file()]
    if not images:
        raise UserError(
            f"no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}) found at {pattern}; pass a "
            "folder or a glob, e.g. input=photos or input='photos/**/*.jpg'"
        )
    return images


def output_names(images: list[Path]) -> list[str]:
    """Name of each image in ``detections.json``: its path relative to the images' common
    folder (the file name when they share one folder)."""
    root = Path(os.path.commonpath([p.parent.resolve() for p in images]))
    return [p.resolve().relative_to(root).as_posix() for p in images]


def drawing_paths(names: list[str], output_dir: Path) -> list[Path]:
    """``<output>/<stem>.jpg`` per image; ``<name>.jpg`` (suffix kept) where stems collide."""
    stems = [str(Path(name).with_suffix(".jpg")) for name in names]
    return [
        output_dir / (stem if stems.count(stem) == 1 else f"{name}.jpg")
        for name, stem in zip(names, stems, strict=True)
    ]


def class_name(label: int, class_names: tuple[str, ...] | None) -> str:
    """The name of ``label`` (1 = first class), or ``class <label>`` without names."""
    if class_names is not None and 1 <= label <= len(class_names):
        return class_names[label - 1]
    return f"class {label}"


def detection_records(
    detections: dict[str, Tensor], class_names: tuple[str, ...] | None
) -> list[dict[str, Any]]:
    """JSON-ready ``{label, class_name, score, box}`` per detection, in the given order."""
    return [
        {
            "label": int(label),
            "class_name": class_name(int(label), class_names),
            "score": round(float(score), 5),
            "box": [round(float(v), 2) for v in box],
        }
        for box, score, label in zip(
            detections["boxes"], detections["scores"], detections["labels"], strict=True
        )
    ]


def draw(image: Tensor, records: list[dict[str, Any]]) -> Tensor:
    """``image`` (float ``[3, H, W]`` in [0, 1]) as uint8 with labelled boxes drawn."""
    pixels = image.mul(255).round_().to(torch.uint8)
    if not records:
        return pixels
    return draw_bounding_boxes(
        pixels,
        torch.tensor([r["box"] for r in records]).reshape(-1, 4),
        labels=[f"{r['class_name']} {r['score']:.2f}" for r in records],
        colors=[COLOURS[(r["label"] - 1) % len(COLOURS)] for r in records],
        width=2,
    )


def above_threshold(detections: dict[str, Tensor], threshold: float) -> dict[str, Tensor]:
    """The detections scoring at least ``threshold`` (every field filtered alike)."""
    keep = detections["scores"] >= threshold
    return {k: v[keep] for k, v in detections.items()}


def _check_options(cfg: DictConfig, images: list[Path], targets: list[Path]) -> None:
    if not 0 <= cfg.score_threshold <= 1:
        raise UserError(f"score_threshold={cfg.score_threshold}; pass a score in [0, 1]")
    clashes = {p.resolve() for p in images} & {p.resolve() for p in targets}
    if clashes:
        raise UserError(
            f"output={cfg.output} would overwrite the input image {sorted(clashes)[0]}; "
            "pass another output folder"
        )


def _predict_file(
    predictor: Predictor, path: Path, target: Path, score_threshold: float
) -> list[dict[str, Any]] | None:
    """Detections of the image at ``path`` (drawn into ``target``); ``None`` if unreadable."""
    try:
        image = load_rgb_image(path)
    except BadSampleError as exc:
        tqdm.write(f"warning: {exc}; skipped", file=sys.stderr)
        return None
    detections = above_threshold(predictor.predict(image), score_threshold)
    records = detection_records(detections, predictor.class_names)
    target.parent.mkdir(parents=True, exist_ok=True)
    # PIL writes the file: torchvision's image encoders are deprecated since 0.29
    to_pil_image(draw(image, records)).save(target, format="JPEG", quality=90)
    return records


def predict(cfg: DictConfig) -> dict[str, list[dict[str, Any]]]:
    """Run the command; returns what it writes to ``detections.json``."""
    missing = missing_keys(cfg)
    if missing:
        raise UserError(f"{', '.join(missing)} unset; e.g. ckpt=model.onnx input=photos/")
    predictor = load_predictor(str(cfg.ckpt), threads=cfg.threads)
    images = find_images(str(cfg.input))
    output_dir = Path(cfg.output).expanduser() if cfg.get("output") else None
    output_dir = output_dir or Path(cfg.paths.output_dir)
    if output_dir.is_file():
        raise UserError(f"output={output_dir} is a file; pass a folder")
    names = output_names(images)
    targets = drawing_paths(names, output_dir)
    _check_options(cfg, images, targets)
    results: dict[str, list[dict[str, Any]]] = {}
    skipped = []
    for path, name, target in tqdm(
        list(zip(images, names, targets, strict=True)), desc="predict", unit="image"
    ):
        records = _predict_file(predictor, path, target, cfg.score_threshold)
        if records is None:
            skipped.append(name)
        else:
            results[name] = records
    if skipped:
        print(f"skipped {len(skipped)} unreadable image(s): {', '.join(skipped)}", file=sys.stderr)
    if not results:
        raise UserError(f"none of the {len(images)} images found at {cfg.input} could be read")
    write_json(output_dir / "detections.json", results)
    count = sum(len(r) for r in results.values())
    print(f"{count} detections in {len(results)} images written to {output_dir}")
    if count == 0 and cfg.score_threshold > 0:
        print(
            f"note: no detection scored at least score_threshold={cfg.score_threshold}; pass a "
            f"lower one (e.g. score_threshold={cfg.score_threshold / 2:g}) to see weaker ones",
            file=sys.stderr,
        )
    return results


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
