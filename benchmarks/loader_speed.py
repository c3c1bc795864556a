"""Throughput of the training data loader: images per second the model would be fed.

Composes the train config (``qmimic/conf/train.yaml``, the built-in ``shapes`` data unless
overridden), builds its DataModule, and times ``--batches`` batches of ``train_dataloader()``
after one warm-up batch (worker start-up, first file reads); epochs restart as often as
needed. Decoding, flips and collation are counted; no model runs. The ``shapes`` data is
generated into ``$QMIMIC_CACHE`` (default ``~/.cache/qmimic``) on first use, before the clock
starts.

    python benchmarks/loader_speed.py [--batches 50] [--threads 2] [OVERRIDE ...]

e.g. ``python benchmarks/loader_speed.py data.num_workers=2``.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Iterator
from typing import Any

import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from qmimic.conf import load_config


def endless(loader: DataLoader) -> Iterator:
    """The loader's batches, epoch after epoch.

    Raises:
        ValueError: the loader yields no batch at all.
    """
    if len(loader) == 0:
        raise ValueError("the training loader has no batches")
    while True:
        yield from loader


def measure(batches: int = 50, overrides: list[str] | None = None) -> dict[str, Any]:
    """Training images per second of the configured DataModule's ``train_dataloader()``.

    Args:
        batches: timed batches, after one untimed warm-up batch.
        overrides: train-config overrides (default none: ``data=shapes`` as configured).

    Returns:
        ``{"images_per_s": float, "images": int, "batch_size": int, "num_workers": int}``:
        ``images`` counts the images of the timed batches (a last batch of an epoch may be
        short), ``batch_size`` and ``num_workers`` are the loader's settings.
    """
    cfg = load_config("train", list(overrides or []))
    datamodule = instantiate(cfg.data.datamodule)
    datamodule.setup("fit")
    torch.manual_seed(0)  # the flips draw from the global generator
    stream = endless(datamodule.train_dataloader())
    next(stream)
    start = time.perf_counter()
    images = sum(len(batch_images) for batch_images, _ in itertools.islice(stream, batches))
    seconds = time.perf_counter() - start
    stream.close()  # ends the epoch in progress (and its workers)
    return {
        "images_per_s": images / seconds,
        "images": images,
        "batch_size": int(datamodule.batch_size),
        "num_workers": int(datamodule.num_workers),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="train-config overrides, e.g. data=voc")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = measure(args.batches, args.overrides)
    print(
        f"train loader: batch {result['batch_size']}, {result['num_workers']} workers, "
        f"{args.threads} threads: {result['images']} images in "
        f"{result['images'] / result['images_per_s']:.2f} s = "
        f"{result['images_per_s']:.1f} images/s"
    )


if __name__ == "__main__":
    main()
