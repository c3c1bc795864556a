"""``data.on_bad_sample``: stop at a bad sample, or leave it out of its split and count it.

A sample is bad when one of its files is missing (found before any reading starts, by a stat of
every listed file: :func:`missing_files`) or cannot be read (found when it is read: an unreadable
image, a malformed annotation). Under ``skip`` a bad sample is dropped, never replaced by
another: metrics are computed on the samples that remain, and the run reports how many were
left out and which (see :class:`~qmimic.data.report.DataReport`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset, Subset

from qmimic.data.images import BadSampleError
from qmimic.errors import UserError

POLICIES = ("raise", "skip")
SHOWN = 3  # how many paths a message quotes


def check_policy(on_bad_sample: str) -> str:
    if on_bad_sample not in POLICIES:
        raise UserError(
            f"data.on_bad_sample={on_bad_sample!r} is not a choice; "
            f"use one of {', '.join(POLICIES)}"
        )
    return on_bad_sample


def sample_files(dataset: Dataset, index: int) -> list[Path]:
    """The files item ``index`` of a dataset reads: its ``image_path`` and, where the format
    keeps one file per image, its ``annotation_path``."""
    files = [dataset.image_path(index)]
    if hasattr(dataset, "annotation_path"):
        files.append(dataset.annotation_path(index))
    return files


def missing_files(dataset: Dataset) -> list[tuple[int, Path]]:
    """``(index, path)`` of every listed file that does not exist (a stat each, no reading);
    ``ConcatDataset`` indices count across its parts."""
    if isinstance(dataset, ConcatDataset):
        found, offset = [], 0
        for part in dataset.datasets:
            found += [(offset + i, path) for i, path in missing_files(part)]
            offset += len(part)
        return found
    return [
        (index, path)
        for index in range(len(dataset))
        for path in sample_files(dataset, index)
        if not path.is_file()
    ]


def missing_files_error(split: str, missing: list[tuple[int, Path]], total: int) -> UserError:
    shown = ", ".join(str(path) for _, path in missing[:SHOWN])
    samples = len({index for index, _ in missing})
    return UserError(
        f"{len(missing)} file(s) listed for the {split} split do not exist ({samples} of its "
        f"{total} samples), e.g. {shown}{' ...' if len(missing) > SHOWN else ''}. Restore them or "
        "fix data.root; or pass data.on_bad_sample=skip to leave those samples out (the metrics "
        "are then computed on the samples that remain, and results.json says how many were left "
        "out)."
    )


def without_missing(dataset: Dataset, missing: list[tuple[int, Path]]) -> Subset:
    """``dataset`` without the items whose files are missing (in order)."""
    gone = {index for index, _ in missing}
    return Subset(dataset, [i for i in range(len(dataset)) if i not in gone])


@dataclass(frozen=True)
class DroppedSample:
    """Stands in a batch for a sample of ``split`` that could not be read; the collate function
    drops it and keeps ``(split, message)`` for the report."""

    split: str
    message: str


class DropBadSamples(Dataset):
    """Wraps the dataset of ``split`` whose items may raise :class:`BadSampleError`: such an
    item becomes a :class:`DroppedSample` (see
    :func:`~qmimic.data.datamodule.collate_detection`)."""

    def __init__(self, dataset: Dataset, split: str):
        self.dataset = dataset
        self.split = split

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, dict] | DroppedSample:
        try:
            return self.dataset[index]
        except BadSampleError as exc:
            return DroppedSample(self.split, str(exc))
