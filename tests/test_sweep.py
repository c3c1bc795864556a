"""Hydra sweeps: one results.json per job, a summary table per sweep, one logger group per sweep."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from helpers import compose_train_config, run_cli, save_untrained_checkpoint, tiny_overrides
from qmimic.io.loggers import run_group, run_name
from qmimic.runs.sweep import sweep_groups


def fake_job(sweep: Path, number: int, overrides: list[str], voc07: float) -> None:
    job = sweep / str(number)
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), job / ".hydra" / "overrides.yaml")
    results = {"test/voc07_map": voc07, "test/map": voc07 / 2, "output_dir": str(job)}
    (job / "results.json").write_text(json.dumps(results))


def test_jobs_group_by_the_overrides_that_vary_with_seeds_pooled(tmp_path: Path):
    fixed = "+experiment=qmimic_shapes"
    for number, (weight, seed, voc07) in enumerate(
        [("0.1", 0, 0.30), ("0.1", 1, 0.34), ("1", 0, 0.40), ("1", 1, 0.44), ("10", 0, 0.2)]
    ):
        fake_job(tmp_path, number, [fixed, f"module.mimic_weight={weight}", f"seed={seed}"], voc07)
    (tmp_path / "5" / ".hydra").mkdir(parents=True)  # a job that crashed: no results.json

    groups = sweep_groups(tmp_path)

    assert list(groups) == [
        "module.mimic_weight=0.1",
        "module.mimic_weight=1",
        "module.mimic_weight=10",
    ]
    assert [r["test/voc07_map"] for r in groups["module.mimic_weight=1"]] == [0.40, 0.44]


def test_multirun_writes_results_per_job_and_a_summary(shapes_cache: Path, tmp_path: Path):
    log_dir, sweep_dir = tmp_path / "logs", tmp_path / "sweep"
    teacher = save_untrained_checkpoint(
        "qteacher_shapes", tiny_overrides(shapes_cache, log_dir), tmp_path / "qteacher.ckpt"
    )
    result = run_cli(
        "qmimic.train",
        "-m",
        "+experiment=qmimic_shapes",
        "module.mimic_weight=0.1,1,10",
        f"teacher_ckpt={teacher}",
        "trainer.fast_dev_run=true",
        "quant.calibration_batches=1",
        f"hydra.sweep.dir={sweep_dir}",
        *tiny_overrides(shapes_cache, log_dir),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1", "2"):
        assert "test/voc07_map" in json.loads((sweep_dir / job / "results.json").read_text())
    table = (sweep_dir / "summary.md").read_text()
    for weight in ("0.1", "1", "10"):
        assert f"| module.mimic_weight={weight} |" in table
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert summary["module.mimic_weight=10"]["runs"] == 1
    assert "sweep summary" in result.stdout


def test_logger_group_and_name_follow_the_sweep(tmp_path: Path):
    compose_train_config([], tmp_path)  # a single run
    assert run_group("qmimic_shapes") == "qmimic_shapes"
    assert run_name("qmimic_shapes", 3) == "qmimic_shapes-seed3"
    sweep_dir = tmp_path / "multiruns" / "2026-11-22_10-00-00"
    compose_train_config(
        ["hydra.mode=MULTIRUN", f"hydra.sweep.dir={sweep_dir}", "hydra.job.num=2"], tmp_path
    )
    assert run_group("qmimic_shapes") == "qmimic_shapes-sweep-2026-11-22_10-00-00"
    assert run_name("qmimic_shapes", 0) == "qmimic_shapes-job2-seed0"
