"""The three Quantization Mimic stages and the baselines, chained through the command line."""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path

import pytest

from helpers import run_cli, tiny_overrides

FAST = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1"]


def pipeline_command(out: Path, stages: list[str], cache: Path, logs: Path) -> list[str]:
    return ["--out", str(out), "--stages", *stages, *tiny_overrides(cache, logs), *FAST]


def test_pipeline_chains_a_student_to_its_teacher_and_resumes(shapes_cache: Path, tmp_path: Path):
    """Default run: teacher -> mimic student (the cheapest pair with a checkpoint hand-over)."""
    import torch

    out = tmp_path / "pair"
    command = pipeline_command(out, ["teacher", "mimic"], shapes_cache, tmp_path / "logs")
    first = run_cli("qmimic.pipeline", *command, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    table = (out / "summary.md").read_text()
    assert "| teacher |" in table and "| mimic |" in table
    assert "Paper's ordering" not in table  # scratch and qmimic were not run: no verdict
    student = out / "seed0" / "mimic"
    assert json.loads((student / "results.json").read_text())["experiment"] == "mimic_shapes"
    state = torch.load(student / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert any(k.startswith("net.") for k in state) and "regressor.weight" in state
    assert not any("teacher" in k for k in state)  # the frozen teacher is not saved again

    again = run_cli("qmimic.pipeline", *command, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done before, skipped") == 2
    assert (out / "summary.md").read_text() == table


@pytest.mark.slow
def test_pipeline_runs_every_demo_stage_and_writes_the_verdict(shapes_cache: Path, tmp_path: Path):
    out = tmp_path / "demo"
    stages = ["teacher", "qteacher", "scratch", "mimic", "qmimic"]
    command = pipeline_command(out, stages, shapes_cache, tmp_path / "logs")
    first = run_cli("qmimic.pipeline", *command, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]

    table = (out / "summary.md").read_text()
    for stage in stages:
        assert f"| {stage} |" in table
    assert "Paper's ordering qmimic > mimic > scratch on mean test/voc07_map" in table
    summary = json.loads((out / "summary.json").read_text())
    assert summary["qmimic"]["runs"] == 1
    assert summary["scratch"]["parameters"] < summary["teacher"]["parameters"]
    (environment,) = summary["teacher"]["environments"]  # one machine ran it
    assert environment["torch"] == metadata.version("torch") and environment["threads"] >= 1
    stage2 = json.loads((out / "seed0" / "qteacher" / "results.json").read_text())
    assert 0 <= stage2["float/test/map_50"] <= 1 and 0 <= stage2["test/map_50"] <= 1
    qmimic = json.loads((out / "seed0" / "qmimic" / "results.json").read_text())
    assert qmimic["experiment"] == "qmimic_shapes" and 0 <= qmimic["test/voc07_map"] <= 1


def test_stage_scoped_overrides_reach_only_their_stages():
    from qmimic.runs.stage_runs import overrides_for
    from qmimic.stages import load_stages

    stages = {stage.name: stage for stage in load_stages("shapes")}

    def reaching(name: str) -> list[str]:
        return overrides_for(stages[name], list(stages.values()), given)

    given = ["seed=3", "teacher:trainer.max_epochs=3", "students:model.width=0.03125",
             "hydra.run.dir=/a:b", "mimic:module.mimic_weight=10"]  # fmt: skip
    assert reaching("teacher") == [
        "seed=3",
        "trainer.max_epochs=3",
        "hydra.run.dir=/a:b",
    ]
    assert reaching("qteacher") == ["seed=3", "hydra.run.dir=/a:b"]
    assert reaching("scratch") == [
        "seed=3",
        "model.width=0.03125",
        "hydra.run.dir=/a:b",
    ]
    assert reaching("mimic") == [
        "seed=3", "model.width=0.03125", "hydra.run.dir=/a:b", "module.mimic_weight=10",
    ]  # fmt: skip
