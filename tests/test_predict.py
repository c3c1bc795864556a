"""``python -m qmimic.predict`` with a checkpoint and with its ONNX export."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from helpers import run_cli, save_untrained_checkpoint, tiny_overrides
from qmimic.cli.predict import drawing_paths, output_names
from qmimic.data.images import find_images
from qmimic.data.synthetic.shapes import SHAPES_CLASSES
from qmimic.deploy import export_onnx
from qmimic.deploy.runtime import metadata_for, write_metadata
from qmimic.errors import UserError
from qmimic.io.callbacks import ConfigInCheckpoint
from qmimic.io.checkpoints import load_run
from qmimic.predictors import CheckpointPredictor

NAMES = [f"thing{i}" for i in range(1, 7)]


@pytest.fixture(scope="module")
def models(shapes_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An untrained tiny checkpoint storing class names, and its ONNX export."""
    folder = tmp_path_factory.mktemp("models")
    overrides = tiny_overrides(shapes_cache, folder / "logs")
    ckpt = save_untrained_checkpoint("scratch_shapes", overrides, folder / "tiny.ckpt")
    checkpoint = torch.load(ckpt, weights_only=True)
    torch.save({**checkpoint, "qmimic_class_names": NAMES}, ckpt)
    onnx_path = folder / "tiny.onnx"
    export_onnx(load_run(ckpt).detector.eval(), onnx_path, torch.rand(3, 96, 96))
    write_metadata(onnx_path, metadata_for(tuple(NAMES), (96, 96), str(ckpt), "float32"))
    return {"ckpt": ckpt, "onnx": onnx_path}


@pytest.fixture(scope="module")
def images(shapes_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two shapes test images and one corrupt file."""
    folder = tmp_path_factory.mktemp("images")
    for source in sorted(shapes_cache.rglob("test_*.jpg"))[:2]:
        (folder / source.name).write_bytes(source.read_bytes())
    (folder / "broken.png").write_bytes(b"not an image at all")
    return folder


def predict(model: Path, images: Path, output: Path, *extra: str) -> dict:
    result = run_cli(
        "qmimic.predict",
        *extra,
        f"ckpt={model}",
        f"input={images}",
        f"output={output}",
        "score_threshold=0.1",  # an untrained detector scores every class near 1/7
        "threads=1",
        f"paths.log_dir={output.parent / 'logs'}",
        cwd=output.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"cannot read image {images / 'broken.png'}: " in result.stderr  # a logged warning
    assert "skipped 1 unreadable image(s): broken.png" in result.stderr
    return json.loads((output / "detections.json").read_text())


def test_checkpoint_and_onnx_predict_the_same(models: dict, images: Path, tmp_path: Path):
    from_ckpt = predict(models["ckpt"], images, tmp_path / "ckpt")
    good = sorted(p.name for p in images.glob("*.jpg"))
    assert sorted(from_ckpt) == good
    for name in good:
        with Image.open(tmp_path / "ckpt" / name) as drawn, Image.open(images / name) as original:
            assert drawn.format == "JPEG" and drawn.size == original.size
        assert from_ckpt[name], "no detections to compare"
        for detection in from_ckpt[name]:
            assert detection["score"] >= 0.1 and len(detection["box"]) == 4
            assert detection["class_name"] == NAMES[detection["label"] - 1]

    for runtime in ("onnxruntime", "openvino"):
        from_onnx = predict(models["onnx"], images, tmp_path / runtime, f"runtime={runtime}")
        assert sorted(from_onnx) == good
        for name in good:
            assert len(from_onnx[name]) == len(from_ckpt[name]), runtime
            for a, b in zip(from_ckpt[name], from_onnx[name], strict=True):
                assert (a["label"], a["class_name"]) == (b["label"], b["class_name"])
                assert a["score"] == pytest.approx(b["score"], abs=2e-5), runtime
                assert a["box"] == pytest.approx(b["box"], abs=0.02), runtime


def test_no_images_found_is_a_user_error(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("no images here")
    for pattern in (str(tmp_path), str(tmp_path / "*.jpg"), str(tmp_path / "missing")):
        with pytest.raises(UserError, match="no images .* found at"):
            find_images(pattern)


def test_output_names_follow_the_input_layout(tmp_path: Path):
    files = [tmp_path / "a" / "x.jpg", tmp_path / "a" / "x.png", tmp_path / "a" / "sub" / "y.JPG"]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    names = output_names(find_images(str(tmp_path / "a" / "**" / "*")))
    assert names == ["sub/y.JPG", "x.jpg", "x.png"]
    drawn = drawing_paths(names, tmp_path / "out")
    assert [p.relative_to(tmp_path / "out").as_posix() for p in drawn] == [
        "sub/y.jpg", "x.jpg.jpg", "x.png.jpg",
    ]  # fmt: skip


def test_class_names_from_checkpoint_or_the_data_config(shapes_cache: Path, tmp_path: Path):
    overrides = tiny_overrides(shapes_cache, tmp_path / "logs")
    ckpt = save_untrained_checkpoint("scratch_shapes", overrides, tmp_path / "plain.ckpt")
    assert CheckpointPredictor(ckpt).class_names == SHAPES_CLASSES  # no names stored: the data's
    stored: dict = {}
    trainer = SimpleNamespace(datamodule=SimpleNamespace(class_names=("cat", "dog")))
    ConfigInCheckpoint({"seed": 0}).on_save_checkpoint(trainer, None, stored)
    assert stored == {"qmimic_config": {"seed": 0}, "qmimic_class_names": ["cat", "dog"]}


def test_no_detection_above_the_threshold_says_how_to_see_more(
    models: dict, images: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    from omegaconf import OmegaConf

    from qmimic.cli.predict import predict as run_predict

    cfg = OmegaConf.create({
        "ckpt": str(models["onnx"]), "input": str(images / "*.jpg"), "output": str(tmp_path),
        "score_threshold": 1.0, "threads": 1, "runtime": "onnxruntime",
        "paths": {"output_dir": str(tmp_path)},
    })  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="qmimic"):
        results = run_predict(cfg)
    assert results and not any(results.values())  # an untrained model scores near 1/7
    assert "no detection scored at least score_threshold=1.0" in caplog.text
