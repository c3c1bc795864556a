"""The picture of ``make bench``: a trained detector's detections on a few test images, in one JPEG.

The README shows it. Drawing is ``qmimic.drawing``'s (the same boxes and labels the command
writes); this script only picks test images and tiles them side by side.

    python benchmarks/pictures.py CKPT [--out bench/detections.jpg] [--images 4] [--top-k 4]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from int8_speed import test_images
from torchvision.transforms.functional import resize, to_pil_image
from torchvision.utils import make_grid

from qmimic.drawing import detection_records, draw
from qmimic.predictors import CheckpointPredictor, above_threshold

HEIGHT = 384  # the built-in data's 192 px images drawn twice as large, so labels stay legible


def detections_picture(
    ckpt: Path,
    target: Path,
    count: int = 4,
    top_k: int = 4,
    score_threshold: float = 0.2,
    height: int = HEIGHT,
) -> Path:
    """Draw the ``top_k`` best detections of ``ckpt`` scoring at least ``score_threshold`` on
    the first ``count`` test images of its data, each scaled to ``height`` pixels and tiled in a
    row (photos of other shapes padded white), into the JPEG ``target``.

    The best few rather than a fixed high threshold: a tiny student's softmax scores over the
    classes stay low (often below 0.5 on its correct boxes), and the labels show each score."""
    predictor = CheckpointPredictor(ckpt)
    tiles = []
    for image, _ in test_images(ckpt, count)[0]:
        detections = above_threshold(predictor.predict(image), score_threshold)
        best = detections["scores"].argsort(descending=True)[:top_k]
        detections = {k: v[best] for k, v in detections.items()}
        scale = height / image.shape[-2]
        detections["boxes"] = detections["boxes"] * scale
        large = resize(image, [height, round(scale * image.shape[-1])], antialias=True)
        tiles.append(draw(large.clamp(0, 1), detection_records(detections, predictor.class_names)))
    width = max(tile.shape[-1] for tile in tiles)
    tiles = [torch.nn.functional.pad(t, (0, width - t.shape[-1]), value=255) for t in tiles]
    grid = make_grid(torch.stack(tiles), nrow=len(tiles), padding=6, pad_value=255)
    target.parent.mkdir(parents=True, exist_ok=True)
    to_pil_image(grid).save(target, format="JPEG", quality=90)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("--out", type=Path, default=Path("bench/detections.jpg"))
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--height", type=int, default=HEIGHT, help="pixels per drawn image")
    args = parser.parse_args()
    written = detections_picture(args.ckpt, args.out, args.images, args.top_k, height=args.height)
    print(f"written to {written}")


if __name__ == "__main__":
    main()
