"""Aspect-ratio grouping: batches of only landscape or only portrait images.

Padding a portrait image into a batch of landscape ones wastes most of the padded tensor. The
torchvision detection reference scripts group batches this way with a ``GroupedBatchSampler``
that lives in their scripts, not in the library, so a small seeded one is written here.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import ConcatDataset, Dataset, Sampler, Subset

from qmimic.data.images import BadSampleError, image_size


def aspect_groups(dataset: Dataset) -> list[int]:
    """Per item: 0 where width >= height, else 1, read from image headers (no decoding).

    Handles ``ConcatDataset``, ``Subset`` and datasets with ``image_path(index)``; an unreadable
    image goes to group 0 (the sample itself reports the problem when it is loaded).
    """
    if isinstance(dataset, ConcatDataset):
        return [g for part in dataset.datasets for g in aspect_groups(part)]
    if isinstance(dataset, Subset):
        groups = aspect_groups(dataset.dataset)
        return [groups[i] for i in dataset.indices]
    groups = []
    for index in range(len(dataset)):
        try:
            width, height = image_size(dataset.image_path(index))
        except BadSampleError:
            width, height = 1, 1
        groups.append(0 if width >= height else 1)
    return groups


class EpochShuffle(Sampler[int]):
    """A permutation of ``range(n)`` that depends only on ``seed`` and the epoch, which Lightning
    sets through :meth:`set_epoch` at the start of every epoch."""

    def __init__(self, n: int, seed: int = 0):
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.randperm(self.n, generator=generator).tolist()

    def __len__(self) -> int:
        return self.n


class GroupedBatchSampler(Sampler[list[int]]):
    """Shuffled batches whose items all share a group.

    Each epoch the indices are shuffled (:class:`EpochShuffle`, exposed as ``sampler`` where
    Lightning looks for ``set_epoch``), split by group keeping that order, cut into batches of
    ``batch_size`` (the last batch of a group may be smaller), and the batches are shuffled too.
    """

    def __init__(self, groups: Sequence[int], batch_size: int, seed: int = 0):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.groups = torch.as_tensor(list(groups), dtype=torch.int64)
        self.batch_size = batch_size
        self.sampler = EpochShuffle(len(self.groups), seed)

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.tensor(list(self.sampler), dtype=torch.int64)
        batches = []
        for group in torch.unique(self.groups).tolist():
            members = order[self.groups[order] == group]
            batches += [chunk.tolist() for chunk in members.split(self.batch_size)]
        # a stream of its own, so that the batch order does not repeat the index order's draws
        generator = torch.Generator().manual_seed(self.sampler.seed + self.sampler.epoch + 999_983)
        shuffle = torch.randperm(len(batches), generator=generator).tolist()
        yield from (batches[i] for i in shuffle)

    def __len__(self) -> int:
        counts = torch.bincount(self.groups) if len(self.groups) else torch.zeros(0)
        return int(sum(-(-int(c) // self.batch_size) for c in counts))
