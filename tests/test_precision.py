"""Mixed precision: the bf16 autocast path (what a GPU run uses with ``trainer.precision``)
trains the teacher and the Quantization Mimic student on CPU."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from helpers import compose_train_config, save_untrained_checkpoint, tiny_overrides
from qmimic.cli.train import train


@pytest.mark.parametrize("experiment", ["teacher_shapes", "qmimic_shapes"])
def test_bf16_mixed_precision_trains_and_tests(experiment, shapes_cache: Path, tmp_path: Path):
    tiny = tiny_overrides(shapes_cache, tmp_path / "logs")
    extra = []
    if experiment == "qmimic_shapes":
        teacher = save_untrained_checkpoint("qteacher_shapes", tiny, tmp_path / "q.ckpt")
        extra = [f"teacher_ckpt={teacher}", "quant.calibration_batches=1"]
    overrides = [
        f"+experiment={experiment}",
        *tiny,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.precision=bf16-mixed",
        *extra,
    ]
    results = train(compose_train_config(overrides, tmp_path / "run"))
    assert results["steps"] == 2 and results["test/images"] > 0
    assert 0.0 <= results["test/voc07_map"] <= 1.0
    if experiment == "qmimic_shapes":
        assert 0.0 <= results["val/mimic_match"] <= 1.0
        assert math.isfinite(results["val/mimic_distance"])
