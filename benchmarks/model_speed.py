"""Parameters, GFLOPs and CPU time per image of every backbone x framework at several widths.

Each model is built from its Hydra config (``conf/model/<arch>_<framework>.yaml``) with the
Pascal VOC data config, i.e. 600x1000 input, 300 test proposals per image and 21 classes, and
randomly initialised weights. GFLOPs come from :func:`qmimic.models.model_report` (region head
fed exactly the 300-proposal budget); CPU time is the median of ``--repeats`` eval-mode
``predict`` calls on one 600x1000 noise image (batch 1, ``torch.no_grad``) after one warm-up
call, with ``--threads`` intra-op threads. An untrained RPN may keep fewer than 300 proposals
after NMS; the table states how many the timed calls scored.

Usage: python benchmarks/model_speed.py [--widths 1 0.0625 0.03125] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from qmimic.models import ARCHS, FRAMEWORKS, TwoStageDetector, model_report
from qmimic.train import CONFIG_DIR

IMAGE_SIZE = (600, 1000)


def build(arch: str, framework: str, width: float) -> TwoStageDetector:
    overrides = [f"model={arch}_{framework}", "data=voc", f"model.width={width}"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    torch.manual_seed(0)
    return instantiate(cfg.model).eval()


@torch.no_grad()
def scored_proposals(detector: TwoStageDetector, image: torch.Tensor) -> int:
    batch, _ = detector.prepare([image])
    proposals, _ = detector.proposals(batch, detector.features(batch))
    return len(proposals[0])


@torch.no_grad()
def median_ms(detector: TwoStageDetector, image: torch.Tensor, repeats: int) -> float:
    detector.predict([image])  # warm-up: allocator, oneDNN kernel selection
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        detector.predict([image])
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def width_name(width: float) -> str:
    return "1" if width == 1 else f"1/{round(1 / width)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=float, nargs="+", default=[1.0, 1 / 16, 1 / 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image = torch.rand(3, *IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
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
                detector = build(arch, framework, width)
                report = model_report(detector, image_size=IMAGE_SIZE)
                ms = median_ms(detector, image, args.repeats)
                print(
                    f"| {arch} | {framework} | {width_name(width)} | {report['parameters']:,} "
                    f"| {report['gflops']:.2f} | {ms:.0f} | {scored_proposals(detector, image)} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
