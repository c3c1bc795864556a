"""One LightningDataModule for every detection dataset qmimic serves."""

from __future__ import annotations

from typing import Protocol

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from qmimic.data.transforms import RandomHorizontalFlip

Batch = tuple[list[Tensor], list[dict]]


class DetectionSource(Protocol):
    class_names: tuple[str, ...]

    def prepare(self) -> None: ...

    def dataset(self, split: str, train: bool) -> Dataset: ...


def collate_detection(samples: list[tuple[Tensor, dict]]) -> Batch:
    """Keep variable-size images as a list; the detector's transform pads them into a batch."""
    images, targets = zip(*samples, strict=True)
    return list(images), list(targets)


class _Augmented(Dataset):
    def __init__(self, dataset: Dataset, flip: RandomHorizontalFlip):
        self.dataset = dataset
        self.flip = flip

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        return self.flip(*self.dataset[index])


class DetectionDataModule(L.LightningDataModule):
    """Train/val/test loaders over a :class:`DetectionSource`.

    Batches are ``(images, targets)``: ``images`` a list of float ``[3, H_i, W_i]`` in [0, 1];
    ``targets`` a list of dicts with ``boxes`` float ``[M, 4]`` xyxy pixels, ``labels`` int64
    ``[M]`` (1..C, 0 is background), ``difficult`` bool ``[M]`` and ``image_id``.

    Args:
        source: the dataset family (``VOCSource``, ``ShapesSource``, ...).
        batch_size: training images per step; ``eval_batch_size`` for val/test (defaults to it).
        num_workers, persistent_workers, pin_memory: DataLoader settings.
        hflip: probability of a horizontal flip of each training image.
        seed: seeds the training shuffle (flips draw from the seeded global generator).
    """

    def __init__(
        self,
        source: DetectionSource,
        batch_size: int = 4,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        persistent_workers: bool = False,
        pin_memory: bool = False,
        hflip: float = 0.5,
        seed: int = 0,
    ):
        super().__init__()
        self.source = source
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.persistent_workers = persistent_workers and num_workers > 0
        self.pin_memory = pin_memory
        self.hflip = hflip
        self.seed = seed
        self.splits: dict[str, Dataset] = {}

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.source.class_names

    @property
    def num_classes(self) -> int:
        """Classes including background."""
        return len(self.source.class_names) + 1

    def prepare_data(self) -> None:
        self.source.prepare()

    def setup(self, stage: str | None = None) -> None:
        self.source.prepare()  # cheap when done; needed in processes that skipped prepare_data
        wanted = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}
        for split in wanted.get(stage or "", ("train", "val", "test")):
            if split not in self.splits:
                self.splits[split] = self.source.dataset(split, train=split == "train")

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if split not in self.splits:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
        dataset = self.splits[split]
        generator = torch.Generator().manual_seed(self.seed)
        if shuffle:
            dataset = _Augmented(dataset, RandomHorizontalFlip(self.hflip))
        return DataLoader(
            dataset,
            batch_size=self.batch_size if shuffle else self.eval_batch_size,
            shuffle=shuffle,
            generator=generator if shuffle else None,
            num_workers=self.num_workers,
            persistent_workers=self.persistent_workers,
            pin_memory=self.pin_memory,
            collate_fn=collate_detection,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
