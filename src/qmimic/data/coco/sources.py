"""Any dataset in COCO JSON, as a source of a
:class:`~qmimic.data.datamodule.DetectionDataModule`."""

from __future__ import annotations

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

    def __init__(self, images: str | Path, annotations: dict[str, str | Path]):
        self.images = Path(images).expanduser()
        self.annotations = {split: Path(path).expanduser() for split, path in annotations.items()}
        self._files: dict[Path, COCO] = {}
        self._categories: CocoCategories | None = None

    def prepare(self) -> None:
        """Read every split's file and check that they agree on the categories."""
        if self._categories is not None:
            return
        if not self.images.is_dir():
            raise UserError(
                f"COCO images folder not found: {self.images}; pass data.images=FOLDER, the "
                "folder that the annotation files' file_name fields are relative to"
            )
        first: tuple[Path, CocoCategories] | None = None
        for path in dict.fromkeys(self.annotations.values()):
            self._files[path] = read_coco(path)
            categories = categories_of(self._files[path])
            if first is None:
                first = (path, categories)
            elif categories != first[1]:
                raise UserError(
                    f"the categories of {path} differ from those of {first[0]}; export every "
                    "split with the same category list (ids, names and order)"
                )
        if first is None or not first[1].ids:
            raise UserError(f"no categories in the COCO annotation files {self.annotations}")
        self._categories = first[1]

    @property
    def class_names(self) -> tuple[str, ...]:
        self.prepare()
        assert self._categories is not None
        return self._categories.names

    def dataset(self, split: str, train: bool) -> Dataset:
        if split not in self.annotations:
            raise UserError(f"no {split!r} split configured; known: {', '.join(self.annotations)}")
        self.prepare()
        path = self.annotations[split]
        return CocoDataset(self._files[path], self.images, path, train=train)
