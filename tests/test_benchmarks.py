"""The speed benchmarks' measuring functions, at toy sizes: keys, types and value ranges."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

# The benchmark scripts import each other from their folder, which pytest puts on sys.path
# (``pythonpath`` in pyproject.toml).
import distill_step
import eval_speed
import loader_speed
import model_speed
import photo_speed
import pictures
import pytest
import size_speed

from data.trees import tiny_voc
from helpers import TINY_SPEC, in_fresh_process, save_untrained_checkpoint, tiny_overrides

SHAPES_AT_64 = ["+experiment=scratch_shapes", "data.image_size=64"]


def test_latency_rows_of_two_widths() -> None:
    student = model_speed.latency_row("student", SHAPES_AT_64, (64, 96), repeats=1)
    teacher = model_speed.latency_row("teacher", [*SHAPES_AT_64, "model.width=1"], (64, 96), 1)
    for row in (student, teacher):
        assert set(row) == {
            "model",
            "arch",
            "width",
            "size",
            "parameters",
            "gflops",
            "ms",
            "proposals",
        }
        assert row["arch"] == "resnet18"
        assert row["size"] == [64, 96]
        assert row["ms"] > 0 and row["gflops"] > 0
        assert 0 <= row["proposals"] <= 100  # the shapes test budget
    assert (student["model"], student["width"], teacher["width"]) == ("student", 0.0625, 1.0)
    assert 0 < student["parameters"] < teacher["parameters"] / 50
    assert student["gflops"] < teacher["gflops"]


def test_distill_step_measure() -> None:
    result = distill_step.measure(size=64, batch=1, repeats=1)
    assert set(result) == {
        "student_ms",
        "teacher_forward_ms",
        "distill_ms",
        "ratio",
        "target",
        "batch",
        "size",
    }
    assert min(result["student_ms"], result["teacher_forward_ms"], result["distill_ms"]) > 0
    parts = result["student_ms"] + result["teacher_forward_ms"]
    assert math.isfinite(result["ratio"])
    assert result["ratio"] == pytest.approx(result["distill_ms"] / parts)
    assert (result["target"], result["batch"], result["size"]) == (1.15, 1, 64)


def test_distill_budget_comes_from_the_shapes_config() -> None:
    config = distill_step.model_config(0.25, 64, roi_sampling_ratio=2)
    assert (config["width"], config["min_size"], config["max_size"]) == (0.25, 64, 64)
    assert (config["num_classes"], config["roi_output_size"]) == (7, 7)
    assert (config["rpn_post_nms_top_n_test"], config["roi_sampling_ratio"]) == (100, 2)


def test_eval_speed_measure() -> None:
    result = eval_speed.measure(20, batch=8, repeats=1)
    assert set(result) == {"images", "qmimic_s", "torchmetrics_s", "speedup"}
    assert result["images"] == 20
    assert result["qmimic_s"] > 0 and result["torchmetrics_s"] > 0
    assert result["speedup"] == pytest.approx(result["torchmetrics_s"] / result["qmimic_s"])


def test_loader_speed_measure_runs_past_an_epoch(shapes_cache: Path, tmp_path: Path) -> None:
    # The warm-up batch and 2 timed batches of 4 need more than the 8 training images.
    assert TINY_SPEC.num_train < 3 * 4
    result = loader_speed.measure(batches=2, overrides=tiny_overrides(shapes_cache, tmp_path))
    assert set(result) == {"images_per_s", "images", "batch_size", "num_workers"}
    assert (result["images"], result["batch_size"], result["num_workers"]) == (8, 4, 0)
    assert result["images_per_s"] > 0


def test_loader_speed_refuses_an_empty_loader() -> None:
    with pytest.raises(ValueError, match="no batches"):
        next(loader_speed.endless([]))


def test_detections_picture_tiles_drawn_test_images(shapes_cache: Path, tmp_path: Path) -> None:
    from PIL import Image

    overrides = tiny_overrides(shapes_cache, tmp_path)
    ckpt = save_untrained_checkpoint("scratch_shapes", overrides, tmp_path / "tiny.ckpt")
    # An untrained detector scores every class near 1/7: threshold 0 keeps its boxes drawn.
    target = pictures.detections_picture(ckpt, tmp_path / "pic.jpg", count=2, score_threshold=0)
    side = pictures.HEIGHT  # square images, drawn HEIGHT pixels high
    assert side == 2 * 192 and TINY_SPEC.image_size < side
    with Image.open(target) as picture:
        assert picture.format == "JPEG"
        assert picture.size == (2 * side + 3 * 6, side + 2 * 6)  # two tiles and 6 px padding


def test_inference_section_times_every_runtime(tmp_path: Path) -> None:
    import inference_speed

    section = in_fresh_process(  # OpenVINO runs in it: see helpers.in_fresh_process
        partial(inference_speed.measure, repeats=1, threads=1, work=tmp_path, base=SHAPES_AT_64),
        size=(64, 96),
    )
    assert [m["model"] for m in section["models"]] == list(inference_speed.MODELS.values())
    for model in section["models"]:
        assert list(model["ms"]) == list(inference_speed.RUNTIMES)
        assert all(ms > 0 for ms in model["ms"].values())
        assert model["prepared_detects_the_same"] and model["onnx_agrees"], model
    assert (tmp_path / "student" / "int8.onnx").is_file()
    assert section["floor_ms"] > 0 and section["size"] == [64, 96]
    student_ms = section["models"][1]["ms"]["PyTorch for inference"]
    assert section["student_over_floor"] == pytest.approx(student_ms / section["floor_ms"])
    assert section["profile"] and sum(p["share"] for p in section["profile"]) <= 1 + 1e-9


def test_photo_section_on_a_voc_tree(tmp_path: Path) -> None:
    """The real-photo measurements on a generated VOC 2007 tree (2007-train: one photo)."""
    root = tiny_voc(tmp_path / "voc")
    small = ["data.input.min_size=64", "data.input.max_size=96", "data.batch_size=1"]
    section = photo_speed.measure(root, images=5, batches=2, workers=[0], repeats=1, extra=small)
    decode = section["decode"]
    assert decode["images"] == 1 and decode["same_pixels"] is True
    assert decode["pil_images_per_s"] > 0 and decode["torchvision_images_per_s"] > 0
    (loader,) = section["loader"]
    assert (loader["num_workers"], loader["batch_size"], loader["images"]) == (0, 1, 2)
    steps = section["steps"]
    assert steps["batch"] == 1 and steps["sizes"] == [[48, 64]]  # the photo as it was read
    assert steps["ratio"] == pytest.approx(
        steps["distill_ms"] / (steps["student_ms"] + steps["teacher_forward_ms"])
    )


def test_size_table_times_every_model_at_every_size() -> None:
    sizes = [(64, 96), (48, 80)]
    section = size_speed.measure(repeats=1, sizes=sizes, base=SHAPES_AT_64)
    names = [*size_speed.QMIMIC_MODELS, *size_speed.TORCHVISION_MODELS]
    assert [row["model"] for row in section["rows"]] == names
    for row in section["rows"]:
        assert set(row["ms"]) == {"64x96", "48x80"} and min(row["ms"].values()) > 0
    teacher, student = section["rows"][:2]
    assert section["teacher_over_student"]["64x96"] == pytest.approx(
        teacher["ms"]["64x96"] / student["ms"]["64x96"]
    )
