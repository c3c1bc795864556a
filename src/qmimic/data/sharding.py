"""Evaluation splits shared between distributed processes, each image evaluated exactly once."""

from __future__ import annotations

from collections.abc import Iterator

import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

from qmimic.errors import UserError


def distributed_world() -> int:
    """Number of processes in the default process group (1 when none is initialized)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


class ContiguousShardSampler(DistributedSampler):
    """Process ``r`` of ``W`` reads the contiguous block ``[r*N//W, (r+1)*N//W)`` of the ``N``
    items, in order, without padding: blocks differ in size by at most one and every item is
    read once.

    Why not the samplers Lightning injects: its ``DistributedSampler`` pads the last shard with
    repeated items, so some test images would be scored twice, and its
    ``UnrepeatedDistributedSampler`` deals items round-robin, so the rank-major gather of the
    metric states (``dist_reduce_fx="cat"``) would see the images in another order than one
    process does, which changes how exact score ties are broken. Contiguous blocks gathered in
    rank order are the dataset order: the distributed metrics equal the single-process ones.

    Being a ``DistributedSampler``, it is left in place by Lightning's
    ``use_distributed_sampler``.

    Raises:
        UserError: fewer items than processes (a process without any would never reach the
        metric gather the others wait in).
    """

    def __init__(self, dataset: Dataset, num_replicas: int | None = None, rank: int | None = None):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        size = len(dataset)  # type: ignore[arg-type]
        if size < self.num_replicas:
            raise UserError(
                f"cannot share {size} evaluation image(s) between {self.num_replicas} "
                "processes; use fewer devices (trainer.devices) or a larger split"
            )
        self.start = size * self.rank // self.num_replicas
        self.stop = size * (self.rank + 1) // self.num_replicas
        self.num_samples = self.stop - self.start
        self.total_size = size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.num_samples
