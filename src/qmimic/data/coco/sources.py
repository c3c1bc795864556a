"""Any dataset in COCO JSON, as a source of a
:class:`~qmimic.data.datamodule.DetectionDataModule`."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from pycocotools.coco import COCO
from torch.utils.data import Dataset

from qmimic.data.coco.annotations import CocoCategories, CocoDataset, categories_of, read_coco
from qmimic.errors import UserError


class CocoSource:
    """Images in one folder, one COCO JSON file per split.

    Args:
        images: the folder that the files' ``file_name`` fields are relative to.
        annotations: ``{"train": path, "val": path, "test": path}``; every file must list the
            same categories (ids, names, order), which give the classes.
    """

    pixel_offset = 0  # COCO boxes are continuous pixel coordinates (see RandomHorizontalFlip)
    classes_from_files = True  # the names are the files' categories: known once one is read

    def __init__(self, images: str | Path, annotations: dict[str, str | Path]):
        self.images = Path(images).expanduser()
        self.annotations = {split: Path(path).expanduser() for split, path in annotations.items()}
        self._files: dict[Path, COCO] = {}
        self._categories: CocoCategories | None = None
        self._first: Path | None = None  # the file the categories were first read from

    def prepare(self, splits: Collection[str] | None = None) -> None:
        """Read the files of ``splits`` (default: every split) not read yet, and check that
        every file read agrees on the categories. Evaluating reads only its own file."""
        for split in splits or ():
            if split not in self.annotations:
                raise UserError(
                    f"no {split!r} split configured; known: {', '.join(self.annotations)}"
                )
        if not self.images.is_dir():
            raise UserError(
                f"COCO images folder not found: {self.images}; pass data.images=FOLDER, the "
                "folder that the annotation files' file_name fields are relative to"
            )
        wanted = self.annotations if splits is None else {s: self.annotations[s] for s in splits}
        for path in dict.fromkeys(wanted.values()):
            if path in self._files:
                continue
            self._files[path] = read_coco(path)
            categories = categories_of(self._files[path])
            if not categories.ids:
                raise UserError(f"no categories in the COCO annotation file {path}")
            if self._categories is None:
                self._categories, self._first = categories, path
            elif categories != self._categories:
                raise UserError(
                    f"the categories of {path} differ from those of {self._first}; export every "
                    "split with the same category list (ids, names and order)"
                )

    @property
    def class_names(self) -> tuple[str, ...]:
        """Category names, from the first file read (every file is read if none was)."""
        if self._categories is None:
            self.prepare()
        assert self._categories is not None
        return self._categories.names

    def dataset(self, split: str, train: bool) -> Dataset:
        if split not in self.annotations:
            raise UserError(f"no {split!r} split configured; known: {', '.join(self.annotations)}")
        self.prepare([split])
        path = self.annotations[split]
        return CocoDataset(self._files[path], self.images, path, train=train)
