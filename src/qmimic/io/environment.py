"""What a run's numbers depend on besides its config: library versions, the processor and the
thread count.

A run repeats bit for bit on the same machine with the same libraries and thread count. Across
processors it need not: PyTorch's CPU kernels pick code paths by instruction set (``AVX2``,
``AVX512``) and split work by thread, and different float rounding grows over training into
different weights. ``results.json`` records these facts under ``environment`` so that two runs of
one config that disagree can be told apart from a bug.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib import metadata

import torch

_LIBRARIES = ("torch", "torchvision", "lightning", "numpy", "pillow")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _processor() -> str:
    """The CPU model as the kernel names it (``/proc/cpuinfo``), else what Python knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_environment() -> dict[str, object]:
    """The facts above, as plain JSON values.

    Returns ``{"python", "torch", "torchvision", "lightning", "numpy", "pillow", "processor",
    "cpu_capability", "threads", "cuda_device"}``; ``cuda_device`` is ``None`` without a GPU.
    """
    facts: dict[str, object] = {"python": platform.python_version()}
    facts.update({name: _version(name) for name in _LIBRARIES})
    facts["processor"] = _processor()
    facts["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    facts["threads"] = torch.get_num_threads()
    facts["cuda_device"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    return facts


def describe(facts: dict[str, object]) -> str:
    """One log line: ``torch 2.14.1, AMD EPYC (AVX2), 2 threads`` (and the GPU, if any)."""
    line = f"torch {facts['torch']}, {facts['processor']} ({facts['cpu_capability']}), "
    line += f"{facts['threads']} threads"
    return line if facts["cuda_device"] is None else f"{line}, GPU {facts['cuda_device']}"


def distinct_environments(runs: Iterable[dict]) -> list[dict]:
    """The different ``environment`` records of ``runs`` (``results.json`` contents), in
    first-seen order; runs without one are passed over. More than one: the runs came from
    different machines or libraries, so their differences are not seed noise alone."""
    kept: list[dict] = []
    for run in runs:
        if "environment" in run and run["environment"] not in kept:
            kept.append(run["environment"])
    return kept
