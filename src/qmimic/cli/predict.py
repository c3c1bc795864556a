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
from typing import Any

import hydra
from omegaconf import DictConfig
from torchvision.transforms.functional import to_pil_image
from tqdm import tqdm

from qmimic.conf import CONFIG_PATH, check_complete
from qmimic.data.images import BadSampleError, load_rgb_image
from qmimic.drawing import above_threshold, detection_records, draw
from qmimic.errors import UserError, exit_on_user_error
from qmimic.predictors import Predictor, load_predictor
from qmimic.runs.log import get_logger, route_library_logs
from qmimic.runs.results import write_json

log = get_logger("qmimic.predict")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


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
    check_complete(cfg, "e.g. ckpt=model.onnx input=photos/")
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
        log.warning("skipped %d unreadable image(s): %s", len(skipped), ", ".join(skipped))
    if not results:
        raise UserError(f"none of the {len(images)} images found at {cfg.input} could be read")
    write_json(output_dir / "detections.json", results)
    count = sum(len(r) for r in results.values())
    log.info("%d detections in %d images written to %s", count, len(results), output_dir)
    if count == 0 and cfg.score_threshold > 0:
        log.warning(
            "note: no detection scored at least score_threshold=%s; pass a lower one "
            "(e.g. score_threshold=%g) to see weaker ones",
            cfg.score_threshold,
            cfg.score_threshold / 2,
        )
    return results


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="predict")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    route_library_logs()
    predict(cfg)


if __name__ == "__main__":
    main()
