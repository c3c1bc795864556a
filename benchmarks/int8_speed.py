"""The int8 sections of ``make bench``: a trained detector in PyTorch, and its ONNX float32 and
int8 files in onnxruntime and OpenVINO.

The checkpoint is exported with ``python -m qmimic.export ... quantize=int8`` (the
command users run, with its agreement check against PyTorch), then each of the five runs the
test split of the checkpoint's data one image at a time: median milliseconds per image and
VOC07 / COCO mAP from the same metrics training reports.

    python benchmarks/int8_speed.py CKPT [--out DIR] [--images N] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from qmimic.io.checkpoints import checkpoint_config, load_checkpoint
from qmimic.modules.evaluation import DetectionMetrics, metric_targets
from qmimic.predictors import Predictor, load_predictor


def export(ckpt: Path, out: Path) -> tuple[Path, Path]:
    """ONNX float32 and int8 files of ``ckpt`` in ``out``, exported afresh (files left there by
    an earlier run may come from another checkpoint; an export takes seconds)."""
    float_path, int8_path = out / "model.onnx", out / "model.int8.onnx"
    float_path.unlink(missing_ok=True)
    int8_path.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "qmimic.export", f"ckpt={ckpt}", "quantize=int8",
        f"output={float_path}", f"hydra.run.dir={out / 'export_log'}",
    ]  # fmt: skip
    print(f"$ {' '.join(command[1:])}", flush=True)
    if subprocess.run(command).returncode != 0:
        raise SystemExit(f"error: exporting {ckpt} failed (log in {out / 'export_log'})")
    return float_path, int8_path


Sample = tuple[torch.Tensor, dict]


def test_images(ckpt: Path, count: int | None) -> tuple[list[Sample], str]:
    """The first ``count`` (all when None) test images and targets of the checkpoint's data,
    and the data's evaluation protocol."""
    config = checkpoint_config(load_checkpoint(ckpt), ckpt)
    datamodule = instantiate(OmegaConf.create(config["data"]).datamodule)
    datamodule.prepare_data()
    datamodule.setup("test")
    dataset = datamodule.test_dataloader().dataset
    count = len(dataset) if count is None else min(count, len(dataset))
    return [dataset[i] for i in range(count)], config["data"].get("eval_protocol", "voc")


def measure(predictor: Predictor, samples: list[Sample], protocol: str) -> dict:
    """Median ms per image (batch 1, one warm-up call) and mAP over ``samples``."""
    metrics = DetectionMetrics(protocol)
    predictor.predict(samples[0][0])
    times = []
    for image, target in samples:
        start = time.perf_counter()
        detections = predictor.predict(image)
        times.append((time.perf_counter() - start) * 1000)
        metrics.update([detections], metric_targets([target]))
    values = metrics.compute()
    return {
        "ms": statistics.median(times),
        "voc07_map": float(values.get("voc07_map", float("nan"))),
        "map": float(values["map"]),
    }


def int8_section(ckpt: Path, out: Path, images: int | None, threads: int) -> dict:
    """An ``int8`` section of ``bench/results.json`` for ``ckpt`` (ONNX files in ``out``); its
    ``speedup`` and ``voc07_map_cost`` compare onnxruntime float32 with onnxruntime int8."""
    float_path, int8_path = export(ckpt, out)
    samples, protocol = test_images(ckpt, images)
    rows = []
    for runtime, path, onnx_runtime in (
        ("PyTorch", ckpt, None),
        ("onnxruntime float32", float_path, "onnxruntime"),
        ("onnxruntime int8", int8_path, "onnxruntime"),
        ("OpenVINO float32", float_path, "openvino"),
        ("OpenVINO int8", int8_path, "openvino"),
    ):
        print(f"  {runtime}: {len(samples)} test images ...", flush=True)
        predictor = load_predictor(str(path), threads, runtime=onnx_runtime or "onnxruntime")
        rows.append({"runtime": runtime, **measure(predictor, samples, protocol)})
    size = list(samples[0][0].shape[-2:])
    return {
        "model": f"{ckpt} ({len(samples)} test images)",
        "size": size,
        "rows": rows,
        "speedup": rows[1]["ms"] / rows[2]["ms"],
        "voc07_map_cost": rows[1]["voc07_map"] - rows[2]["voc07_map"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ckpt", type=Path)
    parser.add_argument("--out", type=Path, default=Path("bench/int8"))
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from report import int8_table

    print(
        int8_table({"int8": int8_section(args.ckpt, args.out, args.images, args.threads)}, "int8")
    )


if __name__ == "__main__":
    main()
