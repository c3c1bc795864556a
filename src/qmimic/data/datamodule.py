"""One LightningDataModule for every detection dataset qmimic serves."""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from typing import Any, Protocol

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from qmimic.data.bad_samples import (
    DropBadSamples,
    DroppedSample,
    check_policy,
    missing_files,
    missing_files_error,
    without_missing,
)
from qmimic.data.grouping import GroupedBatchSampler, aspect_groups
from qmimic.data.report import SKIPPED, DataReport
from qmimic.data.sharding import ContiguousShardSampler, distributed_world
from qmimic.data.transforms import RandomHorizontalFlip
from qmimic.errors import UserError

Batch = tuple[list[Tensor], list[dict]]


class DetectionSource(Protocol):
    """A dataset family on disk. ``pixel_offset`` (optional, default 1) is the box convention
    the horizontal flip needs: 1 for 1-based inclusive pixel indices (VOC), 0 for continuous
    coordinates (WIDER FACE)."""

    class_names: tuple[str, ...]

    def prepare(self, splits: Collection[str] | None = None) -> None:
        """Make sure the files of ``splits`` (None: every configured split) are there."""
        ...

    def dataset(self, split: str, train: bool) -> Dataset: ...


def collate_detection(samples: list[tuple[Tensor, dict] | DroppedSample]) -> Batch:
    """Keep variable-size images as a list; the detector's transform pads them into a batch.

    Samples that could not be read (:class:`~qmimic.data.bad_samples.DroppedSample`) are left
    out; their ``(split, message)`` pairs ride in the first target under
    :data:`~qmimic.data.report.SKIPPED`, or
    in a target of their own when nothing else is left (the data module's report removes it,
    leaving an empty batch that the modules skip)."""
    kept = [s for s in samples if not isinstance(s, DroppedSample)]
    dropped = [(s.split, s.message) for s in samples if isinstance(s, DroppedSample)]
    images = [image for image, _ in kept]
    targets = [target for _, target in kept]
    if dropped:
        if targets:
            targets[0] = {**targets[0], SKIPPED: dropped}
        else:
            targets = [{SKIPPED: dropped}]
    return images, targets


class _Augmented(Dataset):
    def __init__(self, dataset: Dataset, flip: RandomHorizontalFlip):
        self.dataset = dataset
        self.flip = flip

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, dict] | DroppedSample:
        item = self.dataset[index]
        return item if isinstance(item, DroppedSample) else self.flip(*item)


def auto_workers(cpus: int | None = None, processes: int | None = None) -> int:
    """Loader processes for ``data.num_workers=auto``: 0 with 2 usable CPUs or fewer (the
    model's step needs both; a worker only takes turns with it), else half of the CPUs each
    training process on this machine gets (``LOCAL_WORLD_SIZE`` processes, as torchrun and
    Lightning's DDP launcher set it), at most 8.

    Args:
        cpus: usable CPUs (default: this process's CPU affinity).
        processes: training processes on this machine (default: ``LOCAL_WORLD_SIZE`` or 1).
    """
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if processes is None:
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    share = (cpus or 1) // max(1, processes)
    return 0 if share <= 2 else min(8, share // 2)


class DetectionDataModule(L.LightningDataModule):
    """Train/val/test loaders over a :class:`DetectionSource`.

    Batches are ``(images, targets)``: ``images`` a list of float ``[3, H_i, W_i]`` in [0, 1];
    ``targets`` a list of dicts with ``boxes`` float ``[M, 4]`` xyxy pixels, ``labels`` int64
    ``[M]`` (1..C, 0 is background), ``difficult`` bool ``[M]`` and ``image_id``, plus what the
    dataset adds (WIDER FACE evaluation targets: ``easy``/``medium``/``hard`` bool ``[M]``).

    Resizing (single- or multi-scale) is the detector's job, not the data's (``data.input``).

    Boxes clipped to their image, degenerate boxes dropped from training targets and bad
    samples left out are counted as batches reach the model, and reported in one
    :class:`~qmimic.data.report.DataWarning` per kind at the end of fit/validate/test.

    Every split is checked for listed files that do not exist when it is loaded (a stat per
    file, before any reading; :meth:`use_splits` loads the splits a command will read before it
    starts): ``raise`` stops there with one message, ``skip`` leaves those samples out.

    Args:
        source: the dataset family (``VOCSource``, ``ShapesSource``, ``WiderFaceSource``, ...).
        batch_size: training images per step; ``eval_batch_size`` for val/test (defaults to it).
        num_workers: loader processes, or ``"auto"`` (:func:`auto_workers`: none on a machine
            of 2 CPUs or fewer, where the training step needs both cores and loading in the
            main process measured fastest; else half the CPUs of each process's share, at most
            8).
        persistent_workers, pin_memory: DataLoader settings.
        hflip: probability of a horizontal flip of each training image.
        seed: seeds the training order (shuffle or grouped batches); flips draw from the global
            generator, which ``seed_everything`` seeds (and DataLoader workers derive from it).
            The shuffle generator's state goes into checkpoints (:meth:`state_dict`), so a run
            resumed from an epoch end sees the batches an uninterrupted run would.
        aspect_ratio_grouping: training batches hold only landscape or only portrait images.
        on_bad_sample: ``raise`` (stop at a missing or unreadable image or a malformed
            annotation, naming the file) or ``skip`` (leave the sample out of its split, never
            replace it, and report how many were left out; see :mod:`qmimic.data.bad_samples`).
    """

    def __init__(
        self,
        source: DetectionSource,
        batch_size: int = 4,
        eval_batch_size: int | None = None,
        num_workers: int | str = 0,
        persistent_workers: bool = False,
        pin_memory: bool = False,
        hflip: float = 0.5,
        seed: int = 0,
        aspect_ratio_grouping: bool = False,
        on_bad_sample: str = "raise",
    ):
        super().__init__()
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise UserError(
                    f"data.{name} must be a whole number of images, at least 1; got {value!r}"
                )
        if num_workers == "auto":
            num_workers = auto_workers()
        if not isinstance(num_workers, int) or num_workers < 0:
            raise UserError(
                "data.num_workers must be 0 (load in the main process), more, or auto; "
                f"got {num_workers!r}"
            )
        self.source = source
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.persistent_workers = persistent_workers and num_workers > 0
        self.pin_memory = pin_memory
        self.hflip = hflip
        self.seed = seed
        self.aspect_ratio_grouping = aspect_ratio_grouping
        self.on_bad_sample = check_policy(on_bad_sample)
        self.splits: dict[str, Dataset] = {}
        self.active: tuple[str, ...] | None = None  # the splits read (None: every one)
        self.report = DataReport()
        self._train_order: torch.Generator | None = None  # the shuffle's, once a loader exists
        self._resumed_order: Tensor | None = None  # its state from a checkpoint

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.source.class_names

    @property
    def num_classes(self) -> int:
        """Classes including background."""
        return len(self.source.class_names) + 1

    def prepare_data(self) -> None:
        self.source.prepare(self.active)

    def use_splits(self, splits: Sequence[str]) -> None:
        """Read only ``splits`` (e.g. evaluation reads only ``test``: the other splits' files
        need not exist), and load and check them now, before any training or scoring starts."""
        self.active = tuple(dict.fromkeys(splits))
        self.prepare_data()
        for split in self.active:
            self._load(split)

    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()  # cheap when done; needed in processes that skipped prepare_data
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        for split in wanted.get(stage or "", ("train", "val", "test")):
            self._load(split)

    def _load(self, split: str) -> Dataset:
        """The split's dataset, opened and checked for missing files on first use."""
        if split in self.splits:
            return self.splits[split]
        dataset = self.source.dataset(split, train=split == "train")
        for message in getattr(dataset, "skipped", ()):  # records the reader left out
            self.report.skip(message, split)
        missing = missing_files(dataset)
        if missing and self.on_bad_sample == "raise":
            raise missing_files_error(split, missing, len(dataset))
        for _, path in missing:
            self.report.skip(f"file not found: {path}", split)
        if missing:
            dataset = without_missing(dataset, missing)
        self.splits[split] = dataset
        return dataset

    def _dataset(self, split: str, train: bool) -> Dataset:
        dataset = self._load(split)
        if self.on_bad_sample == "skip":
            dataset = DropBadSamples(dataset, split)
        if train:
            offset = getattr(self.source, "pixel_offset", 1)
            dataset = _Augmented(dataset, RandomHorizontalFlip(self.hflip, offset=offset))
        return dataset

    def _loader(self, split: str, train: bool) -> DataLoader:
        dataset = self._dataset(split, train)
        common: dict[str, Any] = dict(
            num_workers=self.num_workers,
            persistent_workers=self.persistent_workers,
            pin_memory=self.pin_memory,
            collate_fn=collate_detection,
        )
        if not train:
            # Under DDP each process scores its own block of the split, every image once (see
            # ContiguousShardSampler); training batches are sharded by Lightning.
            sampler = ContiguousShardSampler(dataset) if distributed_world() > 1 else None
            return DataLoader(dataset, batch_size=self.eval_batch_size, sampler=sampler, **common)
        if self.aspect_ratio_grouping:
            groups = aspect_groups(self.splits[split])
            sampler = GroupedBatchSampler(groups, self.batch_size, seed=self.seed)
            return DataLoader(dataset, batch_sampler=sampler, **common)
        generator = torch.Generator().manual_seed(self.seed)
        if self._resumed_order is not None:
            generator.set_state(self._resumed_order)
        self._train_order = generator
        return DataLoader(
            dataset, batch_size=self.batch_size, shuffle=True, generator=generator, **common
        )

    def state_dict(self) -> dict[str, Any]:
        """The shuffle generator's state (a uint8 tensor), saved in checkpoints by Lightning.

        Lightning saves at an epoch's end, after that epoch's order was drawn, so the state is
        the one the next epoch starts from. Grouped batches need nothing: they are reseeded by
        epoch (:class:`~qmimic.data.grouping.EpochShuffle`).
        """
        return {} if self._train_order is None else {"train_order": self._train_order.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved; applied when the training loader is made."""
        self._resumed_order = state_dict.get("train_order")

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        """Count (and remove) what the readers noted in the targets; see :class:`DataReport`."""
        self.report.take(batch[1])
        return batch

    def teardown(self, stage: str) -> None:
        self.report.flush(stage)
