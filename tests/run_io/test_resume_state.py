"""What a resumed run needs to draw what the uninterrupted run draws: the random states and the
shuffle order, saved in checkpoints and restored."""

from __future__ import annotations

import io
import random

import numpy as np
import torch

from helpers import TINY_SPEC
from qmimic.data import DetectionDataModule, ShapesSource
from qmimic.io.callbacks import RandomStateInCheckpoint


def _draws() -> tuple:
    return torch.rand(3).tolist(), random.random(), float(np.random.rand())


def _through_a_file(state: dict) -> dict:
    """As a checkpoint carries it: saved, then read with ``weights_only=True``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_random_states_round_trip_through_a_checkpoint():
    callback = RandomStateInCheckpoint()
    torch.manual_seed(5), random.seed(5), np.random.seed(5)
    saved = _through_a_file(callback.state_dict())
    expected = _draws()
    torch.manual_seed(99), random.seed(99), np.random.seed(99)
    callback.load_state_dict(saved)
    assert _draws() == expected


def _epoch_orders(datamodule: DetectionDataModule, epochs: int) -> list[list[str]]:
    loader = datamodule.train_dataloader()
    return [[t["image_id"] for _, targets in loader for t in targets] for _ in range(epochs)]


def test_shuffle_order_resumes_at_the_next_epoch(shapes_cache):
    def datamodule() -> DetectionDataModule:
        source = ShapesSource(shapes_cache, TINY_SPEC)
        module = DetectionDataModule(source, batch_size=2, hflip=0.0, seed=3)
        module.setup("fit")
        return module

    whole = datamodule()
    orders = _epoch_orders(whole, 3)
    assert orders[0] != orders[1]  # each epoch its own order
    cut = datamodule()
    _epoch_orders(cut, 1)
    state = _through_a_file(cut.state_dict())  # saved at the end of the first epoch
    resumed = datamodule()
    resumed.load_state_dict(state)
    assert _epoch_orders(resumed, 2) == orders[1:]
    fresh = datamodule()
    assert _epoch_orders(fresh, 1)[0] == orders[0]  # without a state: the seed's first order
