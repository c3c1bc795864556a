"""Pascal VOC on disk: annotation parsing and a dataset over one ``(year, image_set)``.

Layout, as the VOC devkit ships it (``root`` is the folder that holds ``VOCdevkit``)::

    root/VOCdevkit/VOC2007/JPEGImages/<id>.jpg
    root/VOCdevkit/VOC2007/Annotations/<id>.xml
    root/VOCdevkit/VOC2007/ImageSets/Main/{train,val,trainval,test}.txt

Boxes are kept in the devkit's own pixel coordinates (1-based, inclusive), as float xyxy, so an
evaluator using the devkit's +1 convention reproduces the official numbers.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from qmimic.data.boxes import clean_target
from qmimic.data.images import BadSampleError, load_rgb_image
from qmimic.errors import UserError

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip


def voc_year_dir(root: str | Path, year: str | int) -> Path:
    """``root/VOCdevkit/VOC<year>``."""
    return Path(root) / "VOCdevkit" / f"VOC{year}"


def read_image_set(root: str | Path, year: str | int, image_set: str) -> list[str]:
    """Image ids listed in ``ImageSets/Main/<image_set>.txt``; :class:`UserError` if absent."""
    path = voc_year_dir(root, year) / "ImageSets" / "Main" / f"{image_set}.txt"
    if not path.is_file():
        raise UserError(
            f"Pascal VOC image set not found: {path}\n"
            f"Expected the devkit layout root/VOCdevkit/VOC{year}/{{JPEGImages,Annotations,"
            f"ImageSets/Main}} under data.root={root}. Point data.root at the folder that holds "
            "VOCdevkit, or set data.download=true."
        )
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def _text(node: ET.Element, tag: str, path: Path) -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        raise BadSampleError(f"malformed annotation {path}: <{node.tag}> has no <{tag}>")
    return child.text.strip()


def parse_voc_annotation(
    path: str | Path, class_names: tuple[str, ...], strict: bool = False
) -> dict[str, Tensor]:
    """Read one VOC XML file.

    With ``strict`` (annotation tools' exports, where a mistake is likelier than in the devkit)
    the file must also give its image ``<size>``, and a box must have a positive width and
    height (``xmax > xmin``, ``ymax > ymin``); the devkit's own files pass either way.

    Returns:
        ``boxes`` float32 ``[M, 4]`` (xmin, ymin, xmax, ymax as written), ``labels`` int64 ``[M]``
        (1-based index into ``class_names``; 0 is background), ``difficult`` bool ``[M]`` (False
        where the tag is missing, as in parts of VOC2012).

    Raises:
        BadSampleError: unreadable XML, a missing field, an unknown class name or a box with
        ``xmax < xmin`` / ``ymax < ymin`` (and, with ``strict``, no ``<size>`` or an empty box);
        the message names the file and the object (counted from 1 in file order).
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise BadSampleError(f"cannot parse annotation {path}: {exc}") from None
    if strict and root.find("size") is None:
        raise BadSampleError(
            f"annotation {path} has no <size>: export it with the image width and height"
        )
    index = {name: i + 1 for i, name in enumerate(class_names)}
    boxes, labels, difficult = [], [], []
    for number, obj in enumerate(root.iter("object"), start=1):
        name = _text(obj, "name", path)
        where = f"annotation {path}, object {number} ({name!r})"
        if name not in index:
            raise BadSampleError(
                f"{where}: unknown class {name!r}; the classes are {', '.join(class_names)}"
            )
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise BadSampleError(f"malformed {where}: <object> has no <bndbox>")
        try:
            box = [float(_text(bndbox, tag, path)) for tag in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError as exc:
            raise BadSampleError(f"malformed {where}: {exc}") from None
        if box[2] < box[0] or box[3] < box[1]:
            raise BadSampleError(f"{where} has an inverted box {box}")
        if strict and (box[2] == box[0] or box[3] == box[1]):
            raise BadSampleError(f"{where} has an empty box {box} (zero width or height)")
        flag = obj.find("difficult")
        boxes.append(box)
        labels.append(index[name])
        difficult.append(flag is not None and (flag.text or "0").strip() == "1")
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "difficult": torch.tensor(difficult, dtype=torch.bool),
    }


class VOCDataset(Dataset):
    """One ``(year, image_set)`` of a VOC-layout tree.

    ``image_set`` is any file of ``ImageSets/Main`` (``trainval``, ``test``, ``dog_val``, ...);
    its first column lists the image ids.

    Items are ``(image, target)``: ``image`` float ``[3, H, W]`` in [0, 1]; ``target`` as
    :func:`parse_voc_annotation` plus ``image_id`` (the file stem). Boxes reaching beyond the
    image are clipped to it. When ``keep_difficult`` is False, difficult objects are dropped (what
    training wants); evaluation keeps them flagged. With ``train=True``, boxes without area
    (``xmax <= xmin`` or ``ymax <= ymin``) are dropped too. What was clipped or dropped is counted
    under :data:`~qmimic.data.boxes.CLIPPED` / :data:`~qmimic.data.boxes.DROPPED`.
    """

    def __init__(
        self,
        root: str | Path,
        year: str | int = 2007,
        image_set: str = "trainval",
        class_names: tuple[str, ...] = VOC_CLASSES,
        keep_difficult: bool = True,
        train: bool = False,
        strict: bool = False,
    ):
        self.root = Path(root)
        self.strict = strict
        self.year = str(year)
        self.image_set = image_set
        self.class_names = tuple(class_names)
        self.keep_difficult = keep_difficult
        self.train = train
        self.ids = read_image_set(root, year, image_set)
        self.year_dir = voc_year_dir(root, year)

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        return self.year_dir / "JPEGImages" / f"{self.ids[index]}.jpg"

    def annotation_path(self, index: int) -> Path:
        return self.year_dir / "Annotations" / f"{self.ids[index]}.xml"

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor | str]]:
        target: dict[str, Tensor | str] = dict(
            parse_voc_annotation(self.annotation_path(index), self.class_names, self.strict)
        )
        if not self.keep_difficult:
            keep = ~target["difficult"]
            target = {k: v[keep] for k, v in target.items()}
        target["image_id"] = self.ids[index]
        image = load_rgb_image(self.image_path(index))
        return image, clean_target(target, image.shape[-1], image.shape[-2], self.train)
