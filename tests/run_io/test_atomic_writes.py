"""An interrupted write never leaves a truncated file where a good one was."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import fsspec.implementations.local as local_fs
import pytest
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from qmimic.io import results
from qmimic.io.results import write_json


class CutShort:
    """A file that takes half of what is written to it, then is interrupted (Ctrl-C)."""

    def __init__(self, handle):
        self.handle = handle

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.handle.close()

    def write(self, text: str) -> None:
        self.handle.write(text[: len(text) // 2])
        self.handle.flush()
        raise KeyboardInterrupt


def test_results_survive_an_interrupted_rewrite(tmp_path: Path):
    path = write_json(tmp_path / "results.json", {"test/map": 0.5})
    before = path.read_bytes()
    real_fdopen = os.fdopen
    with (
        mock.patch.object(results.os, "fdopen", lambda *a, **k: CutShort(real_fdopen(*a, **k))),
        pytest.raises(KeyboardInterrupt),
    ):
        write_json(path, {"test/map": 0.75, "padding": "x" * 10_000})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["results.json"]  # the partial temporary file is gone


def test_a_checkpoint_survives_an_interrupted_rewrite(tmp_path: Path):
    """The checkpoint writer the Trainer uses (``TorchCheckpointIO``) writes through a temporary
    file too: cut in the middle, the previous ``last.ckpt`` stays as it was."""
    path = tmp_path / "checkpoints" / "last.ckpt"
    writer = TorchCheckpointIO()
    writer.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)
    before = path.read_bytes()
    real_write = local_fs.LocalFileOpener.write

    def cut_short(self, data):
        real_write(self, data[: len(data) // 2])
        raise KeyboardInterrupt

    with (
        mock.patch.object(local_fs.LocalFileOpener, "write", cut_short),
        pytest.raises(KeyboardInterrupt),
    ):
        writer.save_checkpoint({"state_dict": {"w": torch.zeros(10_000)}}, path)
    assert path.read_bytes() == before
    assert torch.load(path, weights_only=True)["global_step"] == 1
    assert os.listdir(path.parent) == ["last.ckpt"]
