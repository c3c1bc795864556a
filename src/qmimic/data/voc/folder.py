"""One folder in the Pascal VOC format, as annotation tools export it (LabelImg, CVAT, Label
Studio, Roboflow...): the way to train on your own classes from XML.

Layout (``root`` is the exported folder itself; no ``VOCdevkit/VOC<year>`` level)::

    root/Annotations/<id>.xml          one per image, VOC XML
    root/JPEGImages/<id>.<jpg|png|..>  the images (any suffix of IMAGE_SUFFIXES)
    root/ImageSets/Main/<split>.txt    the ids of each split, one per line

Annotations are read strictly (:func:`~qmimic.data.voc.annotations.parse_voc_annotation`): a
file without ``<size>``, an object of an unknown class, or an empty or inverted box is a bad
sample whose message names the file and the object.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Collection, Sequence
from pathlib import Path

from torch.utils.data import Dataset

from qmimic.data.images import IMAGE_SUFFIXES
from qmimic.data.voc.annotations import VOCDataset
from qmimic.errors import UserError

LAYOUT = "Annotations/<id>.xml, JPEGImages/<id>.jpg (or .png, ...), ImageSets/Main/<split>.txt"


def read_split_list(root: Path, name: str) -> list[str]:
    """Ids listed in ``root/ImageSets/Main/<name>.txt``."""
    path = root / "ImageSets" / "Main" / f"{name}.txt"
    if not path.is_file():
        raise UserError(
            f"split list not found: {path}\nExpected an exported Pascal VOC folder at "
            f"data.root={root}: {LAYOUT}. Point data.root at the folder that holds Annotations/, "
            "or name the lists your export has with data.train=..., data.val=..., data.test=..."
        )
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def image_files(folder: Path) -> dict[str, Path]:
    """``{id: path}`` of the images in ``folder`` (one listing; a stem's first file in name
    order wins)."""
    found: dict[str, Path] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                found.setdefault(path.stem, path)
    return found


def class_names_in(annotations: Sequence[Path]) -> tuple[str, ...]:
    """The sorted object class names found in ``annotations`` (files that cannot be parsed are
    passed over here: they are reported as bad samples when they are read)."""
    names: set[str] = set()
    for path in annotations:
        try:
            root = ET.parse(path).getroot()
        except (ET.ParseError, OSError):
            continue
        names.update((obj.findtext("name") or "").strip() for obj in root.iter("object"))
    names.discard("")
    return tuple(sorted(names))


class VOCFolderDataset(VOCDataset):
    """The ids of one split list of an exported folder, read as :class:`VOCDataset` reads the
    devkit (same items and target contract), strictly."""

    def __init__(
        self,
        root: str | Path,
        split_list: str,
        class_names: tuple[str, ...],
        keep_difficult: bool = True,
        train: bool = False,
        images: dict[str, Path] | None = None,
    ):
        self.root = Path(root)
        self.year_dir = self.root  # Annotations/ and JPEGImages/ sit in the folder itself
        self.year = ""
        self.image_set = split_list
        self.class_names = tuple(class_names)
        self.keep_difficult = keep_difficult
        self.train = train
        self.strict = True
        self.ids = read_split_list(self.root, split_list)
        self.images = images if images is not None else image_files(self.root / "JPEGImages")

    def image_path(self, index: int) -> Path:
        name = self.ids[index]
        return self.images.get(name, self.root / "JPEGImages" / f"{name}.jpg")


class VOCFolderSource:
    """An exported Pascal VOC folder with its own classes.

    Args:
        root: the exported folder (see the module docstring).
        splits: for ``train``/``val``/``test``, the name of its list in ``ImageSets/Main``.
        classes: class names in label order 1..C; ``None`` takes the sorted names found in the
            training split's annotations.
        train_difficult: keep difficult objects in training targets (dropped by default; always
            kept, flagged, in evaluation targets).
    """

    pixel_offset = 1  # VOC boxes: 1-based inclusive pixel indices (see RandomHorizontalFlip)

    def __init__(
        self,
        root: str | Path,
        splits: dict[str, str] | None = None,
        classes: Sequence[str] | None = None,
        train_difficult: bool = False,
    ):
        self.root = Path(root).expanduser()
        self.splits = dict(splits or {"train": "train", "val": "val", "test": "test"})
        self.classes = None if classes is None else tuple(classes)
        self._given = self.classes
        self.train_difficult = train_difficult
        self._images: dict[str, Path] | None = None
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            raise UserError(f"data.classes names a class twice: {list(self.classes)}")

    def prepare(self, splits: Collection[str] | None = None) -> None:
        """Check the folder and the lists of ``splits`` (default: every configured split)."""
        for split in splits or ():
            if split not in self.splits:
                raise UserError(f"no {split!r} split configured; known: {', '.join(self.splits)}")
        if not (self.root / "Annotations").is_dir():
            raise UserError(
                f"not an exported Pascal VOC folder: {self.root} has no Annotations/ folder. "
                f"Expected {LAYOUT} under data.root."
            )
        for split in self.splits if splits is None else splits:
            read_split_list(self.root, self.splits[split])

    @property
    def classes_from_files(self) -> bool:
        """Whether the class names are read from the training annotations (no ``classes``)."""
        return self._given is None

    @property
    def class_names(self) -> tuple[str, ...]:
        """``classes``, or the sorted names found in the training split's annotations."""
        if self.classes is None:
            ids = read_split_list(self.root, self.splits["train"])
            self.classes = class_names_in([self.root / "Annotations" / f"{i}.xml" for i in ids])
            if not self.classes:
                raise UserError(
                    f"no object classes found in the annotations of the {self.splits['train']} "
                    f"list of {self.root}; give them with data.classes=[name, ...]"
                )
        return self.classes

    def dataset(self, split: str, train: bool) -> Dataset:
        if split not in self.splits:
            raise UserError(f"no {split!r} split configured; known: {', '.join(self.splits)}")
        if self._images is None:
            self._images = image_files(self.root / "JPEGImages")
        return VOCFolderDataset(
            self.root, self.splits[split], self.class_names,
            keep_difficult=self.train_difficult or not train, train=train, images=self._images,
        )  # fmt: skip
