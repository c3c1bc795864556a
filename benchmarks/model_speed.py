"""Parameters, GFLOPs and CPU time per image of every backbone x framework at several widths.

Each model is built from its Hydra config (``qmimic/conf/model/<arch>_<framework>.yaml``) with the
Pascal VOC data config, i.e. 600x1000 input, 300 test proposals per image and 21 classes, and
randomly initialised weights. GFLOPs come from :func:`qmimic.models.model_report` (region head
fed exactly the 300-proposal budget); CPU time is the median of ``--repeats`` ``predict`` calls
of the model as ``qmimic.predict`` runs it (``for_inference``: BatchNorm folded, region pooling
by gather) on one 600x1000 noise image (batch 1, ``torch.no_grad``) after one warm-up call,
with ``--threads`` intra-op threads. An untrained RPN may keep fewer than 300 proposals
after NMS; the table states how many the timed calls scored.

:func:`latency_row` measures one configured model the same way and returns the figures.

Usage: python benchmarks/model_speed.py [--widths 1 0.0625 0.03125] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from qmimic.conf import load_config
from qmimic.models import ARCHS, FRAMEWORKS, TwoStageDetector, model_report
from qmimic.models.inference import for_inference
from report import width_name

IMAGE_SIZE = (600, 1000)


def build(overrides: list[str]) -> tuple[TwoStageDetector, DictConfig]:
    """The configured detector in eval mode (weights seeded, random) and its model config."""
    cfg = load_config("train", overrides)
    torch.manual_seed(0)
    return instantiate(cfg.model).eval(), cfg.model


@torch.no_grad()
def scored_proposals(detector: TwoStageDetector, image: torch.Tensor) -> int:
    batch, _ = detector.prepare([image])
    proposals, _ = detector.proposals(batch, detector.features(batch))
    return len(proposals[0])


def median_seconds(step: Callable[[], None], repeats: int, warmup: int = 3) -> float:
    """Median wall time of ``repeats`` calls of ``step`` after ``warmup`` untimed calls
    (allocator, oneDNN kernel selection)."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@torch.no_grad()
def median_ms(detector: TwoStageDetector, image: torch.Tensor, repeats: int) -> float:
    return 1000 * median_seconds(lambda: detector.predict([image]), repeats, warmup=1)


def latency_row(
    name: str, overrides: list[str], size: tuple[int, int], repeats: int
) -> dict[str, Any]:
    """Size, cost and CPU latency of the detector ``compose("train", overrides)`` describes.

    The time is the median of ``repeats`` ``predict`` calls of the detector prepared for
    inference (:func:`~qmimic.models.inference.for_inference`) on one seeded noise image
    ``[3, H, W]`` (batch 1, after one warm-up call); the caller sets the thread count.

    Args:
        name: the row's label, returned as ``model``.
        overrides: train-config overrides, e.g. ``["data=voc", "model.width=1"]`` or
            ``["+experiment=scratch_shapes"]``.
        size: ``(H, W)`` of the input image (the detector's transform may resize it).
        repeats: timed calls.

    Returns:
        ``{"model": str, "arch": str, "width": float, "size": [H, W], "parameters": int,
        "gflops": float, "ms": float, "proposals": int}``: GFLOPs as
        :func:`qmimic.models.model_report` counts them (region head fed the full test proposal
        budget), ``ms`` the median milliseconds per image, ``proposals`` how many proposals
        the RPN kept for that image.
    """
    detector, model_cfg = build(overrides)
    image = torch.rand(3, *size, generator=torch.Generator().manual_seed(0))
    report = model_report(detector, image_size=tuple(size))
    return {
        "model": name,
        "arch": str(model_cfg.arch),
        "width": float(model_cfg.width),
        "size": [int(size[0]), int(size[1])],
        "parameters": int(report["parameters"]),
        "gflops": float(report["gflops"]),
        "ms": float(median_ms(for_inference(detector), image, repeats)),
        "proposals": scored_proposals(detector, image),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=float, nargs="+", default=[1.0, 1 / 16, 1 / 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"# {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} image, batch 1, eval, torch {torch.__version__}, "
        f"{args.threads} threads, median of {args.repeats} after 1 warm-up, "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )
    print(
        "| arch | framework | width | parameters | GFLOPs (300 proposals) | CPU ms/image "
        "| proposals scored |"
    )
    print("|---|---|---|---:|---:|---:|---:|")
    for arch in ARCHS:
        for framework in FRAMEWORKS:
            for width in args.widths:
                overrides = [f"model={arch}_{framework}", "data=voc", f"model.width={width}"]
                name = f"{arch} {framework} {width_name(width)}"
                row = latency_row(name, overrides, IMAGE_SIZE, args.repeats)
                print(
                    f"| {arch} | {framework} | {width_name(width)} | {row['parameters']:,} "
                    f"| {row['gflops']:.2f} | {row['ms']:.0f} | {row['proposals']} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
