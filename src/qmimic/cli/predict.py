"""Detect objects in image files:
``python -m qmimic.predict ckpt=PATH input=DIR_OR_GLOB [output=DIR] [score_threshold=0.5]``.

``ckpt`` is a qmimic ``.ckpt`` (run with PyTorch) or an ``.onnx`` file from ``qmimic.export`` (run
with onnxruntime, or OpenVINO with ``runtime=openvino``); all give the same detections. For every
image found (jpg, jpeg, png, bmp; a folder's files or a glob's matches, sorted) it writes
``<output>/<stem>.jpg`` with the detections drawn, and one ``<output>/detections.json`` mapping
each image's name to its list of ``{label, class_name, score, box: [x1, y1, x2, y2]}`` (input-image
pixels). Images in subfolders of a glob keep their relative folder under ``output``. Unreadable
images are reported and skipped. ``reuse_memory=true`` (the default) keeps freed memory in the
process for the next image (:mod:`qmimic.deploy.memory`; glibc only, elsewhere it does nothing).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from torchvision.transforms.functional import to_pil_image
from tqdm import tqdm

from qmimic.cli import hydra_command
from qmimic.conf import check_complete
from qmimic.data.images import BadSampleError, find_images, load_rgb_image
from qmimic.deploy.memory import keep_freed_memory
from qmimic.drawing import detection_records, draw
from qmimic.errors import UserError
from qmimic.io.results import check_output_folder, write_json
from qmimic.log import get_logger
from qmimic.predictors import Predictor, above_threshold, load_predictor

log = get_logger("qmimic.predict")


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
        log.warning("%s; skipped", exc)
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
    if cfg.get("reuse_memory", True):
        keep_freed_memory()  # each image's tensors reuse the last one's memory (glibc)
    predictor = load_predictor(str(cfg.ckpt), threads=cfg.threads, runtime=cfg.runtime)
    images = find_images(str(cfg.input))
    output_dir = Path(cfg.output).expanduser() if cfg.get("output") else None
    output_dir = output_dir or Path(cfg.paths.output_dir)
    check_output_folder(output_dir, "output")
    names = output_names(images)
    targets = drawing_paths(names, output_dir)
    _check_options(cfg, images, targets)
    results: dict[str, list[dict[str, Any]]] = {}
    skipped = []
    jobs = list(zip(images, names, targets, strict=True))
    for path, name, target in tqdm(jobs, desc="predict", unit="image"):
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
            "no detection scored at least score_threshold=%s; pass a lower one "
            "(e.g. score_threshold=%g) to see weaker ones",
            cfg.score_threshold,
            cfg.score_threshold / 2,
        )
    return results


@hydra_command("predict")
def main(cfg: DictConfig) -> None:
    predict(cfg)


if __name__ == "__main__":
    main()
