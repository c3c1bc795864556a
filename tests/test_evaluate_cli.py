"""``python -m qmimic.evaluate`` on a checkpoint written by a tiny training run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from data.trees import tiny_voc, tiny_wider
from helpers import compose_evaluate, run_cli, save_untrained_checkpoint, tiny_overrides
from qmimic.cli.evaluate import evaluate
from qmimic.io.checkpoints import load_run
from qmimic.metrics import WiderFaceAP
from qmimic.modules.evaluation import metric_targets


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


def test_wider_face_is_scored_with_its_settings_and_needs_no_training_files(tmp_path: Path):
    root = tiny_wider(tmp_path / "wider")
    small = [f"data.root={root}", "model.pretrained=false", "model.width=0.0625",
             "data.input.min_size=64", "data.input.max_size=96"]  # fmt: skip
    ckpt = save_untrained_checkpoint("teacher_widerface", small, tmp_path / "teacher.ckpt")
    shutil.rmtree(root / "WIDER_train")
    (root / "wider_face_split/wider_face_train_bbx_gt.txt").unlink()
    loader = ["data=widerface", f"data.root={root}", "data.num_workers=0",
              "data.persistent_workers=false"]  # fmt: skip
    cfg = compose_evaluate([f"ckpt={ckpt}", *loader], tmp_path / "eval")
    results = evaluate(cfg)

    # The same detections through WiderFaceAP, the official protocol.
    detector = load_run(ckpt).detector.eval()
    datamodule = instantiate(cfg.data.datamodule)
    datamodule.use_splits(["test"])
    metric = WiderFaceAP()
    with torch.no_grad():
        for images, targets in datamodule.test_dataloader():
            metric.update(detector.predict(images), metric_targets(targets))
    expected = metric.compute()
    for setting in ("easy", "medium", "hard"):
        assert results[f"test/wider_{setting}"] == pytest.approx(float(expected[setting]))
    assert results["test/images"] == len(datamodule.splits["test"]) > 0
    assert results["test/skipped"] == 0
    assert not (tmp_path / "eval" / "per_class_ap.md").exists()  # a VOC table has no place here


def test_skip_leaves_missing_test_images_out_and_says_so(tmp_path: Path):
    """Under data.on_bad_sample=skip the metric is computed on the images that remain, and the
    run says how many were left out and which."""
    root = tiny_voc(tmp_path / "voc")
    missing = root / "VOCdevkit/VOC2007/JPEGImages/000004.jpg"
    missing.unlink()
    ckpt = save_untrained_checkpoint("scratch_voc", [f"data.root={root}"], tmp_path / "s.ckpt")
    loader = ["data=voc", f"data.root={root}", "data.num_workers=0",
              "data.persistent_workers=false", "data.on_bad_sample=skip"]  # fmt: skip
    results = evaluate(compose_evaluate([f"ckpt={ckpt}", *loader], tmp_path / "eval"))
    assert results["test/images"] == 1 and results["test/skipped"] == 1
    skipped = json.loads((tmp_path / "eval" / "skipped.json").read_text())
    assert skipped == {"test": [f"file not found: {missing}"]}
