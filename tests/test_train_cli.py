"""``python -m qmimic.train`` as a user runs it: a subprocess, its exit code and its files."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import torch

from helpers import TINY_SPEC, run_cli, tiny_overrides
from qmimic.data import SHAPES_CLASSES


def run_train(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_cli("qmimic.train", *overrides, cwd=cwd)


def single_run_dir(log_dir: Path) -> Path:
    (run_dir,) = [p.parent for p in log_dir.rglob("config.yaml") if p.parent.name != ".hydra"]
    return run_dir


def test_fast_dev_run_writes_results(shapes_cache: Path, tmp_path: Path):
    result = run_train(
        *tiny_overrides(shapes_cache, tmp_path),
        "trainer.fast_dev_run=true",
        "+experiment=scratch_shapes",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = single_run_dir(tmp_path)
    results = json.loads((run_dir / "results.json").read_text())
    for key in ("test/map_50", "test/map", "test/voc07_map"):
        assert isinstance(results[key], float) and 0.0 <= results[key] <= 1.0
    assert results["test/images"] == TINY_SPEC.num_test  # what the metrics were computed on
    per_class = results["test/per_class_ap"]  # VOC07 AP per class, named
    assert set(per_class) <= set(SHAPES_CLASSES) and all(0 <= v <= 1 for v in per_class.values())
    assert (run_dir / "per_class_ap.md").read_text().startswith("| class | AP (VOC07, IoU 0.5) |")
    assert results["experiment"] == "scratch_shapes"
    assert results["seed"] == 0 and results["parameters"] > 0 and results["wall_time_s"] > 0
    environment = results["environment"]  # what else the numbers depend on
    assert environment["torch"] == torch.__version__.split("+")[0]
    assert environment["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert environment["threads"] >= 1 and environment["cuda_device"] is None
    assert result.stdout.count("test/voc07_map") == 1  # the metrics, printed once
    log = (run_dir / "train.log").read_text()  # what the run said, also on file
    for message in (
        "model: resnet18 faster_rcnn width=0.0625",
        f"environment: torch {environment['torch']}",
        "results written to",
    ):
        assert message in log and message in result.stdout
    assert "test/map_50" in log


def test_training_writes_resumable_checkpoint(shapes_cache: Path, tmp_path: Path):
    base = [
        *tiny_overrides(shapes_cache, tmp_path),
        "+experiment=scratch_shapes",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "test=false",
    ]
    first = run_train(*base, "trainer.max_epochs=1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    last = single_run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)  # plain data only
    assert checkpoint["global_step"] == 2
    assert checkpoint["qmimic_config"]["model"]["width"] == 0.0625
    clock = checkpoint["callbacks"]["WallTimeInCheckpoint"]
    assert 0 < clock["wall_time_s"] < 3600
    clock["wall_time_s"] = 5000.0  # as if the first process had run for 5000 s before its cut
    torch.save(checkpoint, last)
    resumed = run_train(
        *base,
        "trainer.max_epochs=2",
        f"ckpt_path={last}",
        "paths.log_dir=" + str(tmp_path / "resumed"),
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    again = single_run_dir(tmp_path / "resumed") / "checkpoints" / "last.ckpt"
    assert torch.load(again, map_location="cpu", weights_only=True)["global_step"] == 4
    results = json.loads((single_run_dir(tmp_path / "resumed") / "results.json").read_text())
    assert 5000 < results["wall_time_s"] < 8600  # the cut process's time counts on


def test_unknown_config_choice_is_reported_without_traceback(tmp_path: Path):
    result = run_train("data=nosuchdata", cwd=tmp_path)
    assert result.returncode != 0
    assert "nosuchdata" in result.stderr and "Traceback" not in result.stderr


def test_checkpoint_of_another_architecture_is_refused(shapes_cache: Path, tmp_path: Path):
    base = [
        *tiny_overrides(shapes_cache, tmp_path),
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        "trainer.max_epochs=1",
        "test=false",
    ]
    assert run_train(*base, "+experiment=scratch_shapes", cwd=tmp_path).returncode == 0
    last = single_run_dir(tmp_path) / "checkpoints" / "last.ckpt"
    result = run_train(
        *base,
        "+experiment=teacher_shapes",
        f"ckpt_path={last}",
        "paths.log_dir=" + str(tmp_path / "other"),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "does not match the configured model" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_non_finite_loss_stops_the_run_and_keeps_checkpoints_finite(
    shapes_cache: Path, tmp_path: Path
):
    result = run_train(
        *tiny_overrides(shapes_cache, tmp_path),
        "module.optimizer.lr=1e8",  # a typo'd learning rate
        "module.scheduler.warmup_steps=1",
        "trainer.max_epochs=4",
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "the training loss became non-finite at step" in error[0]
    assert "module.optimizer.lr" in error[0] and "module.non_finite_steps" in error[0]
    run_dir = single_run_dir(tmp_path)
    assert not (run_dir / "results.json").exists()
    for checkpoint in (run_dir / "checkpoints").glob("*.ckpt"):  # what is on disk stays usable
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_a_run_without_validation_ends_well_without_optimized_metric(
    shapes_cache: Path, tmp_path: Path
):
    """A single run has no sweeper to hand ``optimized_metric`` to: a warning, exit 0."""
    result = run_train(
        *tiny_overrides(shapes_cache, tmp_path),
        "+experiment=scratch_shapes",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=0",
        "trainer.max_epochs=1",
        "test=false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no validation ran, so optimized_metric=val/map_50 has no value" in result.stderr
    assert "results.json" in result.stdout and (single_run_dir(tmp_path) / "results.json").exists()
