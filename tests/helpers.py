"""Test helpers: tiny specs and config composition (importable as ``helpers``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from qmimic.cli.train import build_net
from qmimic.conf import CONFIG_MODULE
from qmimic.data.synthetic.shapes import ShapesSpec
from qmimic.io.checkpoints import save_run
from qmimic.runs.summary import stat

TINY_SPEC = ShapesSpec(num_train=8, num_val=4, num_test=4, image_size=96, max_object_size=48)

# A detector small and cheap enough for unit tests.
TINY_DETECTOR = dict(
    num_classes=7,
    min_size=96,
    max_size=96,
    anchor_sizes=(16, 32, 64),
    rpn_pre_nms_top_n_train=200,
    rpn_post_nms_top_n_train=50,
    rpn_pre_nms_top_n_test=100,
    rpn_post_nms_top_n_test=20,
    box_batch_size_per_image=16,
    roi_output_size=7,
)


def tiny_overrides(cache: Path, log_dir: Path) -> list[str]:
    """Overrides that shrink any shapes run to a few seconds."""
    return [
        f"data.root={cache}",
        f"data.num_train={TINY_SPEC.num_train}",
        f"data.num_val={TINY_SPEC.num_val}",
        f"data.num_test={TINY_SPEC.num_test}",
        f"data.image_size={TINY_SPEC.image_size}",
        f"paths.log_dir={log_dir}",
        "logger=csv",
    ]


def compose_command_config(name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """The primary config ``name`` (``train``, ``evaluate``, ...) composed as the command line
    would, with a Hydra runtime set and the run's output folder at ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg.hydra
    return cfg


def compose_train_config(overrides: list[str], output_dir: Path) -> DictConfig:
    """The ``train`` config composed as the command line would (see compose_command_config)."""
    return compose_command_config("train", overrides, output_dir)


def compose_evaluate(overrides: list[str], output_dir: Path) -> DictConfig:
    """The ``evaluate`` config composed as the command line would (see compose_command_config)."""
    return compose_command_config("evaluate", overrides, output_dir)


def run_cli(module: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m <module> <overrides>`` as a user runs it, output captured."""
    return subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def in_fresh_process(function, *args, **kwargs):
    """``function(*args, **kwargs)`` in a newly spawned interpreter, its result sent back (both must
    pickle). For code that loads a native runtime with its own thread pool (OpenVINO): kept out
    of the test worker, which goes on to fork DataLoader and DDP processes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args, **kwargs).result()


def save_untrained_checkpoint(experiment: str, overrides: list[str], path: Path) -> Path:
    """A checkpoint of ``experiment``'s detector in the format ``qmimic.train`` writes (weights
    random, quantizers uncalibrated): a stand-in stage input for tests."""
    cfg = compose_train_config([f"+experiment={experiment}", *overrides], path.parent)
    with open_dict(cfg):
        cfg.init_ckpt = None
    net, _ = build_net(cfg)
    return save_run(path, net, OmegaConf.to_container(cfg, resolve=True))


class Payload:
    """Unpickling this runs a shell command (the attack a shared teacher file could carry)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def payload_checkpoint(folder: Path) -> tuple[Path, Path]:
    """``folder/teacher.ckpt``, whose unpickling would create ``folder/payload-ran``."""
    marker = folder / "payload-ran"
    path = folder / "teacher.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": Payload(marker)}, path)
    return path, marker


def assert_same_detections(expected: list[dict], got: list[dict]) -> None:
    """Per image: some detections, the same labels, boxes and scores equal within float
    rounding (what a model prepared for inference must keep)."""
    for e, g in zip(expected, got, strict=True):
        assert len(e["boxes"]) > 0 and torch.equal(e["labels"], g["labels"])
        torch.testing.assert_close(g["boxes"], e["boxes"], atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(g["scores"], e["scores"], atol=1e-4, rtol=1e-4)


def _stat(*values: float) -> dict:
    return stat(list(values))


def bench_results_example() -> dict:
    """A small ``bench/results.json`` payload in the schema of ``benchmarks/report.py``."""
    stages = {
        "teacher": (0.25, 0.58),
        "qteacher": (0.25, 0.59),
        "scratch": (0.0625, 0.24),
        "quant": (0.0625, 0.26),
        "mimic": (0.0625, 0.25),
        "qmimic": (0.0625, 0.28),
    }
    rows = {
        stage: {
            "label": f"ResNet18 {stage}",
            "width": width,
            "runs": 3,
            "minutes": 2.5,
            "parameters": 1000 if width < 0.25 else 16000,
            "gflops": 0.1,
            "metrics": {
                "test/voc07_map": _stat(m - 0.01, m, m + 0.01),
                "test/map": _stat(m / 2, m / 2, m / 2),
            },
        }  # fmt: skip
        for stage, (width, m) in stages.items()
    }
    latency = [
        {
            "model": name,
            "arch": "resnet18",
            "width": w,
            "size": size,
            "parameters": p,
            "gflops": g,
            "ms": ms,
            "proposals": 300,
        }  # fmt: skip
        for name, w, size, p, g, ms in (
            ("teacher", 1.0, [600, 1000], 12_000_000, 60.0, 900.0),
            ("student", 0.0625, [600, 1000], 60_000, 0.5, 40.0),
        )
    ]
    runtimes = ("PyTorch as built", "PyTorch for inference", "onnxruntime float32",
                "onnxruntime int8", "OpenVINO float32", "OpenVINO int8")  # fmt: skip

    def timings(*ms: float) -> dict[str, float]:
        return dict(zip(runtimes, ms, strict=True))

    return {
        "meta": {"quick": False, "torch": "2.x", "threads": 2, "started": "2026-01-01T00:00:00",
                 "wall_time_s": 600.0, "load_average": 0.5, "seeds": [0, 1, 2], "schedule": []},
        "quality": {"rows": rows, "qteacher_before": _stat(0.57, 0.58, 0.59),
                    "verdict": "Paper's ordering qmimic > mimic > scratch: holds"},
        "widths": {
            "points": [
                {"method": "scratch", "width": 0.0625, "voc07_map": _stat(0.24), "source": "q"},
                {"method": "scratch", "width": 0.25, "voc07_map": _stat(0.58), "source": "t"},
                {"method": "qmimic", "width": 0.0625, "voc07_map": _stat(0.28), "source": "q"},
                {"method": "qmimic", "width": 0.03125, "voc07_map": _stat(0.2), "source": "w"},
            ],
            "not_run": [{"width": 1.0, "reason": "too slow on CPU"}],
        },
        "speed": {
            "latency": latency,
            "latency_ratio": {"teacher": "teacher", "student": "student", "size": [600, 1000],
                              "ratio": 22.5},
            "train_step": {"student_ms": 50.0, "teacher_forward_ms": 12.0, "distill_ms": 68.0,
                           "ratio": 68 / 62, "target": 1.15, "batch": 4, "size": 192},
            "eval": {"images": 4952, "qmimic_s": 0.8, "torchmetrics_s": 9.0, "speedup": 11.25},
            "loader": {"images_per_s": 310.0, "images": 400, "batch_size": 4, "num_workers": 0},
        },
        "inference": {
            "size": [600, 1000], "threads": 2, "load_average": 0.3, "repeats": 30,
            "models": [
                {"model": "teacher", "ms": timings(1800.0, 1400.0, 1500.0, 500.0, 1300.0, 450.0),
                 "prepared_detects_the_same": True,
                 "onnx_agreement": {"onnxruntime": "1 images, 0 unmatched",
                                    "openvino": "1 images, 0 unmatched"},
                 "onnx_agrees": True},
                {"model": "student", "ms": timings(45.0, 35.0, 30.0, 40.0, 25.0, 38.0),
                 "prepared_detects_the_same": True,
                 "onnx_agreement": {"onnxruntime": "1 images, 0 unmatched",
                                    "openvino": "1 images, 0 unmatched"},
                 "onnx_agrees": True},
            ],
            "floor_ms": 20.0, "teacher_over_student": 40.0, "student_over_floor": 1.75,
            "profile": [{"operator": "aten::mkldnn_convolution", "calls": 23, "ms": 15.0,
                         "share": 0.5}],
        },
        "int8": {"model": "qmimic seed 0", "size": [192, 192], "speedup": 1.6,
                 "voc07_map_cost": 0.004,
                 "rows": [{"runtime": "PyTorch", "ms": 20.0, "voc07_map": 0.28, "map": 0.14},
                          {"runtime": "onnxruntime float32", "ms": 16.0, "voc07_map": 0.28,
                           "map": 0.14},
                          {"runtime": "onnxruntime int8", "ms": 10.0, "voc07_map": 0.276,
                           "map": 0.138}]},
    }  # fmt: skip
