"""``python -m qmimic.cli.coco_example OUT``: the built-in ``shapes`` set written as COCO JSON.

A worked example of bringing your own data: ``OUT/images/<split>/<id>.jpg`` and one
``OUT/<split>.json`` per split, as an annotation tool exports them (VOC's difficult objects become
``iscrowd`` regions, ignored by evaluation as before). Train on it with ``data=coco``; the command
it prints is the one to run.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from omegaconf import OmegaConf

from qmimic.conf import load_config
from qmimic.data.images import image_size
from qmimic.data.synthetic.cache import DEFAULT_CACHE
from qmimic.data.synthetic.shapes import SHAPES_CLASSES, ShapesSpec, ensure_shapes
from qmimic.data.voc.annotations import VOCDataset, parse_voc_annotation
from qmimic.errors import exit_on_user_error
from qmimic.io.results import check_output_folder, write_json

SPLITS = ("train", "val", "test")


def coco_split(dataset: VOCDataset, out: Path, split: str) -> dict:
    """Copy the split's images under ``out/images/<split>`` and return its COCO JSON content."""
    (out / "images" / split).mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index, stem in enumerate(dataset.ids):
        file_name = f"{split}/{stem}.jpg"
        shutil.copyfile(dataset.image_path(index), out / "images" / file_name)
        width, height = image_size(dataset.image_path(index))
        images.append({"id": index + 1, "file_name": file_name, "width": width, "height": height})
        target = parse_voc_annotation(dataset.annotation_path(index), SHAPES_CLASSES)
        columns = (target["boxes"], target["labels"], target["difficult"])
        for box, label, difficult in zip(*columns, strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)  # VOC: 1-based, inclusive pixel indices
            w, h = x2 - x1 + 1, y2 - y1 + 1
            annotations.append({
                "id": len(annotations) + 1, "image_id": index + 1, "category_id": int(label),
                "bbox": [x1 - 1, y1 - 1, w, h], "area": w * h, "iscrowd": int(difficult),
            })  # fmt: skip
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(SHAPES_CLASSES)]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_example(out: Path, spec: ShapesSpec, cache_dir: str | Path = DEFAULT_CACHE) -> list[Path]:
    """Write the COCO tree of ``spec``'s shapes set into ``out``; returns the JSON files."""
    root = ensure_shapes(Path(cache_dir).expanduser(), spec)
    return [
        write_json(
            out / f"{split}.json",
            coco_split(VOCDataset(root, 2007, split, SHAPES_CLASSES), out, split),
        )
        for split in SPLITS
    ]


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the COCO tree into")
    parser.add_argument("--num-train", type=int, default=ShapesSpec.num_train)
    parser.add_argument("--num-val", type=int, default=ShapesSpec.num_val)
    parser.add_argument("--num-test", type=int, default=ShapesSpec.num_test)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="shapes cache folder")
    args = parser.parse_args(argv)
    check_output_folder(args.out, "out")
    spec = ShapesSpec(num_train=args.num_train, num_val=args.num_val, num_test=args.num_test)
    write_example(args.out, spec, args.cache)
    print(f"COCO tree written to {args.out}; train on it with, e.g.:")
    print(
        f"  python -m qmimic.pipeline --data coco data.images={args.out}/images "
        + " ".join(f"data.{s}_annotations={args.out}/{s}.json" for s in SPLITS)
        + " " + " ".join(shapes_sized_overrides())
    )  # fmt: skip


# What sizes the COCO defaults (photos at 600 x 1000, VOC budgets, a full-width teacher) to the
# 192 px shapes images on a CPU: read from recipe/shapes.yaml and data/shapes.yaml.
SHAPES_SIZED_KEYS = (
    "data.input", "data.budget", "data.batch_size", "data.num_workers",
    "data.aspect_ratio_grouping", "recipe.teacher.width", "recipe.teacher.pretrained",
)  # fmt: skip


def shapes_sized_overrides() -> list[str]:
    """``key=value`` overrides (shell-quoted where a list needs it) of :data:`SHAPES_SIZED_KEYS`
    as the shapes recipe sets them."""
    cfg = load_config("train", ["+recipe=shapes"])
    overrides = []
    for key in SHAPES_SIZED_KEYS:
        value = OmegaConf.select(cfg, key)
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        overrides += _flatten(key, value)
    return overrides


def _flatten(key: str, value: object) -> list[str]:
    if isinstance(value, dict):
        return [o for k, v in value.items() for o in _flatten(f"{key}.{k}", v)]
    if isinstance(value, list):
        return [f"'{key}=[{','.join(map(str, value))}]'"]
    return [f"{key}={str(value).lower() if isinstance(value, bool) else value}"]


if __name__ == "__main__":
    main()
