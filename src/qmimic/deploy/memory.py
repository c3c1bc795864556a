"""One process-wide setting for CPU inference: large tensors reuse freed heap memory.

glibc's ``malloc`` serves a request above its mmap threshold (128 KiB at start, raised as larger
mmapped blocks are freed, up to 32 MiB) with fresh pages from the kernel, which faults in and
zeroes every page on first write, and returns blocks freed at the top of the heap once more than
its trim threshold is free. A detector's call allocates its input batch and feature maps anew
each time (7 MiB for one 600x1000 image), so by default part of every call is page faults, and
how much depends on what ran before (the threshold only rises after a large block is freed).
For the ResNet18-1-16 student at 600x1000 on 2 threads this was about a fifth of its time.

:func:`keep_freed_memory` raises both thresholds, so blocks up to 32 MiB come from the heap and
freed memory stays in the process for the next call: the process keeps its peak memory instead
of giving it back. ``qmimic.predict`` calls it (``reuse_memory=true``, the default), and the
benchmark times models for inference under it; training and evaluation do not set it. Other
allocators (jemalloc, tcmalloc through ``LD_PRELOAD``) do the same job; this needs nothing
installed. Written with ``ctypes`` because neither PyTorch nor the standard library exposes
``mallopt``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc's largest accepted mmap threshold: 32 MiB on 64-bit systems, 16 MiB on 32-bit ones
MMAP_THRESHOLD = 4 * 1024 * 1024 * ctypes.sizeof(ctypes.c_long)
TRIM_THRESHOLD = 1024 * 1024 * 1024


@functools.cache
def keep_freed_memory() -> bool:
    """Serve blocks up to 32 MiB (16 MiB on 32-bit systems) from the heap and keep up to 1 GiB
    of freed memory in this process (glibc ``mallopt``); forked children inherit it.

    Returns whether both settings took effect: ``False`` where the C library is not glibc
    (macOS, Windows, musl), where nothing changes, or where glibc refused one of them (the
    other may then hold). Idempotent: later calls return the first call's answer."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mmap_set = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    trim_set = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return mmap_set and trim_set
