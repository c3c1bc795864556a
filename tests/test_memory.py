"""The glibc setting that lets large tensors reuse freed heap memory (``qmimic.predict`` and the
benchmark run under it)."""

from __future__ import annotations

import ctypes
import platform

import pytest
import torch

from helpers import in_fresh_process
from qmimic.deploy.memory import keep_freed_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
# mallinfo2 (glibc >= 2.33) reports how much memory is mmapped
MALLINFO2 = GLIBC and hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")


class _MallocInfo(ctypes.Structure):
    """glibc's ``struct mallinfo2`` (glibc >= 2.33)."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                     "uordblks", "fordblks", "keepcost")
    ]  # fmt: skip


def _mmapped_mib_of_a_24_mib_tensor(keep: bool) -> float:
    """How much of a new 24 MiB tensor glibc served by mmap (fresh pages) instead of its heap."""
    if keep:
        assert keep_freed_memory() and keep_freed_memory()  # idempotent
    info = ctypes.CDLL("libc.so.6").mallinfo2
    info.restype = _MallocInfo
    before = info().hblkhd
    tensor = torch.empty(6 * 1024 * 1024)
    mmapped = (info().hblkhd - before) / 2**20
    del tensor
    return mmapped


@pytest.mark.skipif(not MALLINFO2, reason="mallopt and mallinfo2 are glibc's (>= 2.33)")
def test_large_tensors_come_from_the_heap():
    # fresh processes: the setting holds for the whole process (so the test worker stays as
    # it is), and glibc raises its own threshold once a large mmapped block is freed, so a
    # used process says little
    assert in_fresh_process(_mmapped_mib_of_a_24_mib_tensor, False) >= 24
    assert in_fresh_process(_mmapped_mib_of_a_24_mib_tensor, True) == 0


@pytest.mark.skipif(GLIBC, reason="for C libraries other than glibc")
def test_without_glibc_nothing_changes():
    assert keep_freed_memory() is False
