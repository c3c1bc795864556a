"""COCO-format detection annotations, as annotation tools export them: reading and a dataset.

A file holds ``images`` (``id``, ``file_name`` relative to the images folder, subfolders allowed),
``annotations`` (``image_id``, ``category_id``, ``bbox`` = ``[x, y, width, height]`` in pixels,
optional ``iscrowd``) and ``categories`` (``id``, ``name``); ``info``, ``licenses``, ``area``,
``segmentation`` and annotation ``id`` are optional and unused.

Category ids may be any integers in any order: labels are 1..C in the order the file lists its
categories, and the names are kept for predictions and exports. Crowd annotations
(``iscrowd: 1``) are left out of training targets and flagged ``difficult`` in evaluation
targets, which both metrics treat as regions to ignore (a detection there is neither a hit nor
a false positive), as COCO evaluation does.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from pycocotools.coco import COCO
from torch import Tensor
from torch.utils.data import Dataset

from qmimic.data.boxes import clean_target, select
from qmimic.data.images import BadSampleError, load_rgb_image
from qmimic.errors import UserError


@dataclass(frozen=True)
class CocoCategories:
    """The categories of a file, in its order: ``ids[i]`` is label ``i + 1``, named ``names[i]``."""

    ids: tuple[int, ...]
    names: tuple[str, ...]

    def labels(self) -> dict[int, int]:
        return {category: i + 1 for i, category in enumerate(self.ids)}


def _malformed(path: Path, what: str) -> UserError:
    return UserError(
        f"malformed COCO annotation file {path}: {what}; export the split again as COCO JSON "
        "(detection: images, annotations, categories)"
    )


def _list_of_records(data: dict, key: str, path: Path, fields: Sequence[str]) -> list[dict]:
    records = data.get(key)
    if not isinstance(records, list):
        raise _malformed(path, f'no "{key}" list')
    for i, record in enumerate(records):
        missing = [f for f in fields if not isinstance(record, dict) or f not in record]
        if missing:
            raise _malformed(path, f'{key}[{i}] has no "{missing[0]}"')
    return records


def read_coco(path: str | Path) -> COCO:
    """Read and check one COCO JSON file; returns pycocotools' index over it.

    Raises:
        UserError: a missing or unparsable file, or a missing ``images``/``categories`` list
            or required field (the message names the file and the record).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(
            f"COCO annotation file not found: {path}; pass the JSON file of each split as "
            "data.train_annotations=..., data.test_annotations=... (data.val_annotations "
            "defaults to the test file)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot parse COCO annotation file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise _malformed(path, "the top level is not an object")
    _list_of_records(data, "images", path, ("id", "file_name"))
    categories = _list_of_records(data, "categories", path, ("id", "name"))
    if len({c["id"] for c in categories}) != len(categories):
        raise _malformed(path, "two categories share an id")
    annotations = data.setdefault("annotations", [])
    _list_of_records(data, "annotations", path, ("image_id", "category_id"))
    for i, annotation in enumerate(annotations):
        annotation.setdefault("id", i + 1)  # pycocotools' index needs one; exports may omit it
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        coco.createIndex()
    return coco


def categories_of(coco: COCO) -> CocoCategories:
    listed = coco.dataset["categories"]
    return CocoCategories(tuple(c["id"] for c in listed), tuple(str(c["name"]) for c in listed))


def _box(annotation: dict) -> list[float] | str:
    """``[x1, y1, x2, y2]`` from a COCO ``bbox``, or why it cannot be one."""
    bbox = annotation.get("bbox")
    if not isinstance(bbox, list | tuple) or len(bbox) != 4:
        return f"bbox {bbox!r} is not [x, y, width, height]"
    try:
        x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
        return f"bbox {bbox!r} is not four numbers"
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return f"bbox {bbox!r} is not finite"
    if w < 0 or h < 0:
        return f"bbox {bbox!r} has a negative width or height"
    return [x, y, x + w, y + h]


class CocoDataset(Dataset):
    """The images of one COCO file, each with its annotations.

    Items are ``(image, target)``: ``image`` float ``[3, H, W]`` in [0, 1]; ``target`` holds
    ``boxes`` float32 ``[M, 4]`` (x1, y1, x2, y2 in pixels, continuous coordinates), ``labels``
    int64 ``[M]`` (1..C, see :class:`CocoCategories`), ``difficult`` bool ``[M]`` (crowd
    regions) and ``image_id`` (``file_name`` without its suffix). Images without annotations
    have ``M = 0``. Boxes reaching beyond the image are clipped; with ``train=True`` crowd
    regions and boxes of zero width or height are dropped (see
    :func:`~qmimic.data.boxes.clean_target`).

    Raises (when an item is read):
        BadSampleError: an unreadable image, or an annotation with a bad ``bbox`` or an
            unknown ``category_id`` (named with the file and the annotation id).
    """

    def __init__(self, coco: COCO, images: str | Path, path: str | Path, train: bool = False):
        self.coco = coco
        self.images = Path(images).expanduser()
        self.path = Path(path)
        self.train = train
        self.ids = [record["id"] for record in coco.dataset["images"]]
        self.labels = categories_of(coco).labels()

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        return self.images / self.coco.imgs[self.ids[index]]["file_name"]

    def _target(self, index: int) -> dict[str, Tensor | str]:
        boxes, labels, crowd = [], [], []
        for annotation in self.coco.imgToAnns.get(self.ids[index], []):
            box = _box(annotation)
            label = self.labels.get(annotation["category_id"])
            problem = box if isinstance(box, str) else None
            if label is None:
                problem = f"category_id {annotation['category_id']!r} is not in its categories"
            if problem:
                raise BadSampleError(
                    f"annotation {annotation['id']} of {self.image_path(index)} in {self.path}: "
                    f"{problem}"
                )
            boxes.append(box)
            labels.append(label)
            crowd.append(bool(annotation.get("iscrowd", 0)))
        target: dict[str, Tensor | str] = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "difficult": torch.tensor(crowd, dtype=torch.bool),
        }
        if self.train:
            target = select(target, ~target["difficult"])
        target["image_id"] = str(Path(self.coco.imgs[self.ids[index]]["file_name"]).with_suffix(""))
        return target

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor | str]]:
        target = self._target(index)
        image = load_rgb_image(self.image_path(index))
        return image, clean_target(target, image.shape[-1], image.shape[-2], self.train)
