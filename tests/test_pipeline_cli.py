"""The three Quantization Mimic stages and the baselines, chained through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import tiny_overrides

FAST = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "quant.calibration_batches=2",
]


def train(*overrides: str, log_dir: Path, cache: Path) -> Path:
    """Run one stage; returns its run directory."""
    result = subprocess.run(
        [sys.executable, "-m", "qmimic.train", *tiny_overrides(cache, log_dir), *overrides],
        cwd=log_dir.parent, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (results,) = log_dir.rglob("results.json")
    return results.parent


def test_teacher_quantized_teacher_then_students(shapes_cache: Path, tmp_path: Path):
    teacher = train(
        "+experiment=teacher_shapes", *FAST[:3], log_dir=tmp_path / "teacher", cache=shapes_cache
    )
    teacher_ckpt = teacher / "checkpoints" / "last.ckpt"
    qteacher = train(
        "+experiment=qteacher_shapes",
        f"init_ckpt={teacher_ckpt}",
        *FAST,
        log_dir=tmp_path / "qteacher",
        cache=shapes_cache,
    )
    stage2 = json.loads((qteacher / "results.json").read_text())
    assert 0 <= stage2["float/test/map_50"] <= 1 and 0 <= stage2["test/map_50"] <= 1
    qteacher_ckpt = qteacher / "checkpoints" / "last.ckpt"
    for experiment, teacher_path, extra in (
        ("mimic_shapes", teacher_ckpt, []),  # float student: no quant group to override
        ("qmimic_shapes", qteacher_ckpt, ["quant.calibration_batches=1"]),
    ):
        run = train(
            f"+experiment={experiment}",
            f"teacher_ckpt={teacher_path}",
            "trainer.fast_dev_run=true",
            *extra,
            log_dir=tmp_path / experiment,
            cache=shapes_cache,
        )
        results = json.loads((run / "results.json").read_text())
        assert results["experiment"] == experiment and 0 <= results["test/voc07_map"] <= 1


def test_student_checkpoint_holds_no_teacher(shapes_cache: Path, tmp_path: Path):
    import torch

    teacher = train(
        "+experiment=teacher_shapes", *FAST[:3], log_dir=tmp_path / "teacher", cache=shapes_cache
    )
    student = train(
        "+experiment=mimic_shapes",
        f"teacher_ckpt={teacher / 'checkpoints' / 'last.ckpt'}",
        *FAST[:3],
        log_dir=tmp_path / "student",
        cache=shapes_cache,
    )
    state = torch.load(student / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert any(k.startswith("net.") for k in state) and "regressor.weight" in state
    assert not any("teacher" in k for k in state)
