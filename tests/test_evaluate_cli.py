"""``python -m qmimic.evaluate`` on a checkpoint written by a tiny training run."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import run_cli, tiny_overrides


def test_evaluate_writes_results_and_per_class_table(shapes_cache: Path, tmp_path: Path):
    trained = run_cli(
        "qmimic.train",
        *tiny_overrides(shapes_cache, tmp_path / "train"),
        "+experiment=scratch_shapes",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "test=false",
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    (ckpt,) = (tmp_path / "train").rglob("last.ckpt")
    result = run_cli(
        "qmimic.evaluate", f"ckpt={ckpt}", f"paths.log_dir={tmp_path / 'eval'}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (results_file,) = (tmp_path / "eval").rglob("results.json")
    results = json.loads(results_file.read_text())
    assert 0.0 <= results["test/voc07_map"] <= 1.0 and 0.0 <= results["test/map"] <= 1.0
    table = (results_file.parent / "per_class_ap.md").read_text()
    assert table.startswith("| class | AP (VOC07, IoU 0.5) |") and "**mean**" in table
