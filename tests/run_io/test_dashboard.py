"""Detections on the dashboard: a tiny run per logger, as the user runs it, then its folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

from helpers import tiny_overrides

COUNT = 3  # images per validation


def _train(logger: str, cache: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    command = [
        sys.executable, "-m", "qmimic.train", "+experiment=scratch_shapes",
        *tiny_overrides(cache, run_dir.parent), f"hydra.run.dir={run_dir}", f"logger={logger}",
        "trainer.max_epochs=2", "trainer.limit_train_batches=2", "test=false",
        f"callbacks.detection_images.count={COUNT}", "callbacks.detection_images.min_score=0",
        *extra,
    ]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(shapes_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dashboard")
    jobs = {
        "wandb": ("wandb", "logger.wandb.log_model=true"),
        "tensorboard": ("tensorboard", "callbacks.detection_images.every_n_epochs=2"),
    }
    with ThreadPoolExecutor(2) as pool:
        futures = {
            name: pool.submit(_train, logger, shapes_cache, root / name, *extra)
            for name, (logger, *extra) in jobs.items()
        }
        for name, future in futures.items():
            result = future.result()
            assert result.returncode == 0, f"{name}: {result.stderr[-3000:]}"
    return {name: root / name for name in jobs}


def test_a_resumed_run_logs_on_into_its_own_wandb_run(runs, shapes_cache: Path):
    (first,) = (runs["wandb"] / "wandb").glob("offline-run-*")
    resumed_dir = runs["wandb"].parent / "wandb-resumed"
    ckpt = runs["wandb"] / "checkpoints" / "last.ckpt"
    result = _train("wandb", shapes_cache, resumed_dir, f"ckpt_path={ckpt}", "trainer.max_epochs=3")
    assert result.returncode == 0, result.stderr[-3000:]
    (resumed,) = (resumed_dir / "wandb").glob("offline-run-*")
    run_id = first.name.rsplit("-", 1)[1]  # offline-run-<time>-<id>
    assert resumed.name.rsplit("-", 1)[1] == run_id


def test_wandb_run_holds_images_with_predicted_and_true_boxes(runs):
    (offline,) = (runs["wandb"] / "wandb").glob("offline-run-*")
    images = sorted((offline / "files" / "media" / "images" / "val").glob("detections_*.png"))
    assert len(images) == 2 * COUNT  # two validations, COUNT fixed images each
    boxes = sorted((offline / "files" / "media" / "metadata" / "boxes2D" / "val").glob("*.json"))
    layers = [json.loads(p.read_text()) for p in boxes]
    assert len(layers) == 2 * 2 * COUNT  # predictions and ground truth per image
    # every shapes image has objects: a non-empty, unscored ground-truth layer per image
    truth = [
        layer for layer in layers if layer["box_data"] and "scores" not in layer["box_data"][0]
    ]
    assert len(truth) >= 2 * COUNT
    assert {"1": "striped_circle"}.items() <= truth[0]["class_labels"].items()


def test_wandb_logs_checkpoints_as_artifacts_when_asked(runs):
    (offline,) = (runs["wandb"] / "wandb").glob("offline-run-*")
    (record,) = offline.glob("run-*.wandb")
    assert b"model-" in record.read_bytes()  # logger.wandb.log_model=true: the model artifact


def test_tensorboard_run_holds_images_at_the_interval(runs):
    (events,) = (runs["tensorboard"] / "tensorboard").rglob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events), size_guidance={IMAGES: 0})
    accumulator.Reload()
    tags = accumulator.Tags()[IMAGES]
    assert sorted(tags) == [f"val/detections/{i}" for i in range(COUNT)]
    steps = {event.step for tag in tags for event in accumulator.Images(tag)}
    assert len(steps) == 1  # every_n_epochs=2: the second of two validations only
