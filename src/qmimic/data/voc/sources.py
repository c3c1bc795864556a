"""Pascal VOC as a source of a :class:`~qmimic.data.datamodule.DetectionDataModule`.

A source knows one dataset family on disk: ``prepare()`` makes sure the files exist (generating
or downloading them), ``dataset(split, train)`` opens a split. Splits are named ``train``,
``val`` and ``test``; each maps to one or more ``YEAR-IMAGESET`` entries of a VOC-layout tree.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path

from torch.utils.data import ConcatDataset, Dataset

from qmimic.data.voc.annotations import VOC_CLASSES, VOCDataset, voc_year_dir
from qmimic.data.voc.download import download_voc, manual_instructions
from qmimic.errors import UserError


def _parse_entry(entry: str) -> tuple[str, str]:
    year, sep, image_set = str(entry).partition("-")
    if not sep or not year.isdigit():
        raise UserError(f"bad VOC split entry {entry!r}: write it as YEAR-IMAGESET, e.g. 2007-test")
    return year, image_set


class VOCSource:
    """Pascal VOC (or anything in its layout) under ``root``.

    Args:
        root: folder that holds ``VOCdevkit``.
        splits: for ``train``/``val``/``test``, a list of ``YEAR-IMAGESET`` entries; several
            entries are concatenated (``["2007-trainval", "2012-trainval"]`` is 07+12).
        class_names: class names without background, in label order 1..C.
        train_difficult: keep difficult objects in training targets (dropped by default; always
            kept, flagged, in evaluation targets).
        download: fetch missing years through torchvision's downloader (2007, 2012).
    """

    pixel_offset = 1  # boxes are 1-based inclusive pixel indices (see RandomHorizontalFlip)

    def __init__(
        self,
        root: str | Path,
        splits: dict[str, Sequence[str]],
        class_names: Sequence[str] = VOC_CLASSES,
        train_difficult: bool = False,
        download: bool = False,
    ):
        self.root = Path(root).expanduser()
        self.splits = {name: [_parse_entry(e) for e in entries] for name, entries in splits.items()}
        self.class_names = tuple(class_names)
        self.train_difficult = train_difficult
        self.download = download

    def _missing(self, splits: Collection[str] | None = None) -> list[tuple[str, str]]:
        wanted = self.splits if splits is None else {s: self.splits[s] for s in splits}
        entries = dict.fromkeys(e for entries in wanted.values() for e in entries)
        return [
            (year, image_set)
            for year, image_set in entries
            if not (voc_year_dir(self.root, year) / "ImageSets/Main" / f"{image_set}.txt").is_file()
        ]

    def prepare(self, splits: Collection[str] | None = None) -> None:
        """Check that the image sets of ``splits`` (default: every configured split) exist,
        downloading them if asked to."""
        self._check_known(splits)
        missing = self._missing(splits)
        if missing and self.download:
            download_voc(self.root, missing)
            missing = self._missing(splits)
        if not missing:
            return
        year, image_set = missing[0]
        expected = voc_year_dir(self.root, year) / "ImageSets" / "Main" / f"{image_set}.txt"
        if not self.root.is_dir():
            where = f"dataset root not found: {self.root}"
        else:
            where = f"Pascal VOC image set not found: {expected}"
        raise UserError(
            f"{where}\n"
            f"Expected the devkit layout data.root/VOCdevkit/VOC<year>/{{JPEGImages,Annotations,"
            f"ImageSets/Main/<image_set>.txt}} (missing: "
            + ", ".join(f"{y}-{s}" for y, s in missing)
            + "). Point data.root at the folder that holds VOCdevkit, or set data.download=true.\n"
            + manual_instructions(self.root, missing)
            + self._without_missing(missing)
        )

    def _without_missing(self, missing: list[tuple[str, str]]) -> str:
        """How to run on the image sets that are there, for splits missing only some of theirs
        (e.g. VOC2007 alone: ``data.train=[2007-trainval]``)."""
        hints = []
        for split, entries in self.splits.items():
            present = [e for e in entries if e not in missing]
            if present and len(present) < len(entries):
                listed = ",".join(f"{y}-{s}" for y, s in present)
                hints.append(f"data.{split}=[{listed}]")
        if not hints:
            return ""
        return "\nOr use only the image sets that are there: pass " + " ".join(hints) + "."

    def _check_known(self, splits: Collection[str] | None) -> None:
        for split in splits or ():
            if split not in self.splits:
                raise UserError(f"no {split!r} split configured; known: {', '.join(self.splits)}")

    def dataset(self, split: str, train: bool) -> Dataset:
        self._check_known([split])
        parts = [
            VOCDataset(self.root, year, image_set, self.class_names,
                       keep_difficult=self.train_difficult or not train, train=train)
            for year, image_set in self.splits[split]
        ]  # fmt: skip
        return parts[0] if len(parts) == 1 else ConcatDataset(parts)
