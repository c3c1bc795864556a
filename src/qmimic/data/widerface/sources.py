"""WIDER FACE as a source of a :class:`~qmimic.data.datamodule.DetectionDataModule`."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from qmimic.data.widerface.annotations import (
    SUBSETS,
    WIDER_CLASSES,
    WiderFaceDataset,
    annotation_file,
    find_eval_lists,
    images_dir,
)
from qmimic.errors import UserError

LAYOUT = (
    "WIDER_train/images/<event>/*.jpg, WIDER_val/images/<event>/*.jpg, "
    "wider_face_split/wider_face_{train,val}_bbx_gt.txt and, for evaluation, "
    "eval_tools/ground_truth/wider_{face,easy,medium,hard}_val.mat"
)


class WiderFaceSource:
    """WIDER FACE (or anything in its layout) under ``root``.

    Args:
        root: folder holding ``WIDER_train``, ``WIDER_val`` and ``wider_face_split``.
        splits: the WIDER subset (``train`` or ``val``) read for each of ``train``/``val``/``test``;
            the test labels are not public, so evaluation uses ``val`` (as the paper does).
        gt_dir: a folder of the official ``wider_{face,easy,medium,hard}_val.mat`` lists, looked
            in before ``root/eval_tools/ground_truth``, ``root/ground_truth`` and
            ``root/wider_face_split`` (each file is found on its own).
        on_bad_sample: ``raise`` or ``skip`` malformed annotation records.
    """

    class_names = WIDER_CLASSES
    pixel_offset = 0  # x2 = x1 + w: boxes are continuous pixel coordinates

    def __init__(
        self,
        root: str | Path,
        splits: dict[str, str] | None = None,
        gt_dir: str | Path | None = None,
        on_bad_sample: str = "raise",
    ):
        self.root = Path(root).expanduser()
        self.splits = dict(splits or {"train": "train", "val": "val", "test": "val"})
        for name, subset in self.splits.items():
            if subset not in SUBSETS:
                raise UserError(
                    f"data.{name}={subset!r}: a WIDER FACE split is one of {', '.join(SUBSETS)}"
                )
        self.gt_dir = gt_dir
        self.on_bad_sample = on_bad_sample

    def prepare(self, splits: Collection[str] | None = None) -> None:
        """Check the layout for ``splits`` (default: every configured split): root, annotation
        files and image folders of their subsets, and the evaluation lists when one of them is
        evaluated. Evaluating needs no training files."""
        for split in splits or ():
            if split not in self.splits:
                raise UserError(f"no {split!r} split configured; known: {', '.join(self.splits)}")
        wanted = list(self.splits) if splits is None else list(splits)
        if not self.root.is_dir():
            raise UserError(
                f"dataset root not found: {self.root}\nExpected the official WIDER FACE layout "
                f"under data.root: {LAYOUT}. Set data.root to that folder."
            )
        for subset in dict.fromkeys(self.splits[name] for name in wanted):
            for path in (annotation_file(self.root, subset), images_dir(self.root, subset)):
                if not path.exists():
                    raise UserError(
                        f"WIDER FACE file not found: {path}\nExpected the official layout under "
                        f"data.root={self.root}: {LAYOUT}."
                    )
        if any(name != "train" for name in wanted):
            find_eval_lists(self.root, self.gt_dir)

    def dataset(self, split: str, train: bool) -> WiderFaceDataset:
        if split not in self.splits:
            raise UserError(f"no {split!r} split configured; known: {', '.join(self.splits)}")
        return WiderFaceDataset(
            self.root,
            self.splits[split],
            train=train,
            gt_dir=self.gt_dir,
            skip_bad=self.on_bad_sample == "skip",
        )
