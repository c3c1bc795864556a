"""``python -m qmimic.train data=...`` on tiny trees in the real formats: a subprocess per run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from data.trees import TINY_WIDER_TRAIN, bbx_text, tiny_coco, tiny_voc, tiny_wider

# Small inputs and budgets, the 1/16 student: each run takes seconds on CPU.
FAST = [
    "trainer.fast_dev_run=true",
    "+experiment=scratch_shapes",
    "model.width=0.0625",
    "data.num_workers=0",
    "data.input.min_size=64",
    "data.input.max_size=96",
    "data.budget.rpn_pre_nms_top_n_train=200",
    "data.budget.rpn_post_nms_top_n_train=50",
    "data.budget.rpn_pre_nms_top_n_test=100",
    "data.budget.rpn_post_nms_top_n_test=20",
    "data.budget.box_batch_size_per_image=16",
    "data.budget.roi_output_size=7",
    "logger=csv",
]
METRICS = {"voc": "test/voc07_map", "wider": "test/wider_hard"}


def run_train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "qmimic.train", *FAST, f"paths.log_dir={tmp_path}", *overrides],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def results(log_dir: Path) -> dict:
    (path,) = log_dir.rglob("results.json")
    return json.loads(path.read_text())


def assert_one_message(result: subprocess.CompletedProcess, expected: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("error: ") == 1


def test_voc_tree_trains_and_tests(tmp_path: Path):
    root = tiny_voc(tmp_path / "voc")
    result = run_train(tmp_path, "data=voc", f"data.root={root}")
    assert result.returncode == 0, result.stderr[-3000:]
    found = results(tmp_path)
    for key in ("test/voc07_map", "test/map_50"):
        assert 0.0 <= found[key] <= 1.0


@pytest.mark.parametrize("data", ["widerface", "faces"])
def test_wider_layout_trains_and_tests(tmp_path: Path, data: str):
    if data == "widerface":
        extra = [f"data.root={tiny_wider(tmp_path / 'wider')}", "data.batch_size=3"]
    else:
        extra = [f"data.root={tmp_path / 'cache'}", "data.num_train=6", "data.num_val=4"]
        extra += ["data.image_size=96"]
    result = run_train(tmp_path, f"data={data}", *extra)
    assert result.returncode == 0, result.stderr[-3000:]
    found = results(tmp_path)
    for setting in ("easy", "medium", "hard"):
        assert 0.0 <= found[f"test/wider_{setting}"] <= 1.0
    if data == "widerface":  # the tiny tree has a box beyond its image and one without area
        assert "clipped 1 boxes" in result.stderr
        assert "dropped 1 degenerate boxes" in result.stderr


def test_wider_missing_root(tmp_path: Path):
    missing = run_train(tmp_path, "data=widerface", f"data.root={tmp_path / 'none'}")
    assert_one_message(missing, f"dataset root not found: {tmp_path / 'none'}")
    assert "WIDER_train/images" in missing.stderr


@pytest.mark.slow
def test_wider_wrong_layout(tmp_path: Path):
    (tmp_path / "flat").mkdir()
    wrong = run_train(tmp_path, "data=widerface", f"data.root={tmp_path / 'flat'}")
    assert_one_message(wrong, "wider_face_split/wider_face_train_bbx_gt.txt")


def malformed_wider(tmp_path: Path) -> tuple[Path, Path]:
    root = tiny_wider(tmp_path / "wider")
    annotations = root / "wider_face_split" / "wider_face_train_bbx_gt.txt"
    annotations.write_text(bbx_text(TINY_WIDER_TRAIN).replace("\n0\n", "\nnone\n"))
    return root, annotations


def test_malformed_wider_annotation_names_file_and_line(tmp_path: Path):
    root, annotations = malformed_wider(tmp_path)
    stopped = run_train(tmp_path, "data=widerface", f"data.root={root}")
    assert_one_message(stopped, f"{annotations}:6: expected the face count")


@pytest.mark.slow
def test_malformed_wider_annotation_is_skipped_on_request(tmp_path: Path):
    root, annotations = malformed_wider(tmp_path)
    skipped = run_train(tmp_path, "data=widerface", f"data.root={root}", "data.on_bad_sample=skip")
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    assert "skipped 1 bad samples" in skipped.stderr and f"{annotations}:6" in skipped.stderr


def test_corrupt_voc_image_names_the_file(tmp_path: Path):
    root = tiny_voc(tmp_path / "voc")
    image = root / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000003.jpg"
    image.write_bytes(b"broken")
    result = run_train(tmp_path, "data=voc", f"data.root={root}", "data.num_workers=1")
    assert_one_message(result, f"cannot read image {image}")


def coco_overrides(paths: dict[str, Path]) -> list[str]:
    """``data=coco`` on a tiny export, val left to default to the test file."""
    return [
        "data=coco",
        f"data.images={paths['images']}",
        f"data.train_annotations={paths['train']}",
        f"data.test_annotations={paths['test']}",
        "data.batch_size=2",
        "data.aspect_ratio_grouping=false",
    ]


def test_coco_export_trains_and_evaluates(tmp_path: Path):
    data = coco_overrides(tiny_coco(tmp_path / "coco"))
    one_epoch = ["trainer.fast_dev_run=false", "trainer.max_epochs=1"]
    (tmp_path / "train").mkdir()
    result = run_train(tmp_path / "train", *data, *one_epoch)
    assert result.returncode == 0, result.stderr[-3000:]
    found = results(tmp_path / "train")
    assert 0.0 <= found["test/voc07_map"] <= 1.0 and 0.0 <= found["test/map"] <= 1.0
    (checkpoint,) = (tmp_path / "train").rglob("last.ckpt")
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert saved["qmimic_class_names"] == ["dog", "cat", "bird"]  # the file's category order
    assert saved["qmimic_config"]["model"]["num_classes"] == 4  # from the file
    evaluated = subprocess.run(
        [sys.executable, "-m", "qmimic.evaluate", f"ckpt={checkpoint}",
         f"hydra.run.dir={tmp_path / 'eval'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    again = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert again["test/voc07_map"] == pytest.approx(found["test/voc07_map"], abs=1e-6)


def test_coco_num_classes_that_contradicts_the_file_is_one_message(tmp_path: Path):
    data = coco_overrides(tiny_coco(tmp_path / "coco"))
    result = run_train(tmp_path, *data, "data.num_classes=5")
    assert_one_message(result, "data.num_classes=5 but the dataset has 4 classes")


def test_coco_without_files_names_the_keys(tmp_path: Path):
    result = run_train(tmp_path, "data=coco")
    assert_one_message(result, "data.images=... data.train_annotations=...")
