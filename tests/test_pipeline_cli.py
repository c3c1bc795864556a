"""The three Quantization Mimic stages and the baselines, chained through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import run_cli, tiny_overrides

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


def test_pipeline_runs_every_stage_writes_the_table_and_resumes(shapes_cache: Path, tmp_path: Path):
    out = tmp_path / "demo"
    command = [
        "--out", str(out), "--stages", "teacher", "qteacher", "scratch", "mimic", "qmimic",
        *tiny_overrides(shapes_cache, tmp_path / "logs"), *FAST[:3],
    ]  # fmt: skip
    first = run_cli("qmimic.pipeline", *command, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]

    table = (out / "summary.md").read_text()
    for stage in ("teacher", "qteacher", "scratch", "mimic", "qmimic"):
        assert f"| {stage} |" in table
    assert "Paper's ordering qmimic > mimic > scratch on mean test/voc07_map" in table
    summary = json.loads((out / "summary.json").read_text())
    assert summary["qmimic"]["runs"] == 1
    assert summary["scratch"]["parameters"] < summary["teacher"]["parameters"]
    stage2 = json.loads((out / "seed0" / "qteacher" / "results.json").read_text())
    assert 0 <= stage2["float/test/map_50"] <= 1 and 0 <= stage2["test/map_50"] <= 1
    qmimic = json.loads((out / "seed0" / "qmimic" / "results.json").read_text())
    assert qmimic["experiment"] == "qmimic_shapes" and 0 <= qmimic["test/voc07_map"] <= 1

    again = run_cli("qmimic.pipeline", *command, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done before, skipped") == 5
    assert (out / "summary.md").read_text() == table


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


def test_stage_scoped_overrides_reach_only_their_stages():
    from qmimic.pipeline import overrides_for

    given = ["seed=3", "teacher:trainer.max_epochs=3", "students:model.width=0.03125",
             "hydra.run.dir=/a:b", "mimic:module.mimic_weight=10"]  # fmt: skip
    assert overrides_for("teacher", given) == [
        "seed=3",
        "trainer.max_epochs=3",
        "hydra.run.dir=/a:b",
    ]
    assert overrides_for("qteacher", given) == ["seed=3", "hydra.run.dir=/a:b"]
    assert overrides_for("scratch", given) == [
        "seed=3",
        "model.width=0.03125",
        "hydra.run.dir=/a:b",
    ]
    assert overrides_for("mimic", given) == [
        "seed=3", "model.width=0.03125", "hydra.run.dir=/a:b", "module.mimic_weight=10",
    ]  # fmt: skip
