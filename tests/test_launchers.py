"""Sweeps through Hydra's plugins, for real: the submitit launcher (local executor) and the Optuna
sweeper over the distillation hyperparameters; the sweep summary is written once all jobs end."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers import save_untrained_checkpoint, tiny_overrides


def _sweep(sweep_dir: Path, cache: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "qmimic.train", "-m", *tiny_overrides(cache, sweep_dir.parent),
        f"hydra.sweep.dir={sweep_dir}", "trainer.fast_dev_run=true", *overrides,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=400)


@pytest.fixture(scope="module")
def sweeps(shapes_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("launchers")
    teacher = save_untrained_checkpoint(
        "qteacher_shapes", tiny_overrides(shapes_cache, root), root / "qteacher.ckpt"
    )
    jobs = {
        "submitit": ["+experiment=scratch_shapes", "hydra/launcher=submitit_local", "seed=0,1"],
        "optuna": ["+experiment=qmimic_shapes", f"teacher_ckpt={teacher}", "+search=distill",
                   "hydra.sweeper.n_trials=2"],
    }  # fmt: skip
    with ThreadPoolExecutor(2) as pool:
        futures = {
            name: pool.submit(_sweep, root / name, shapes_cache, *o) for name, o in jobs.items()
        }
        results = {name: future.result() for name, future in futures.items()}
    return {"root": root, "results": results}


def _summary(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "summary.json").read_text())


def test_submitit_local_runs_each_job_and_writes_the_summary(sweeps):
    result = sweeps["results"]["submitit"]
    assert result.returncode == 0, result.stderr[-3000:]
    sweep_dir = sweeps["root"] / "submitit"
    seeds = [json.loads((sweep_dir / job / "results.json").read_text())["seed"] for job in "01"]
    assert seeds == [0, 1]
    assert list(sweep_dir.glob(".submitit/*/*_result.pkl"))  # ran through submitit's executor
    assert "Submitit 'local' sweep output dir" in result.stdout + result.stderr
    (group,) = _summary(sweep_dir).values()  # the seeds of one setting pooled
    assert group["runs"] == 2 and len(group["metrics"]["test/voc07_map"]["values"]) == 2


def test_optuna_searches_the_distillation_settings_on_validation(sweeps):
    result = sweeps["results"]["optuna"]
    assert result.returncode == 0, result.stderr[-3000:]
    sweep_dir = sweeps["root"] / "optuna"
    trials = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/results.json"))]
    assert len(trials) == 2 and all("val/voc07_map" in t for t in trials)
    assert sum(group["runs"] for group in _summary(sweep_dir).values()) == 2
    optimization = (sweep_dir / "optimization_results.yaml").read_text()
    assert (
        "module.mimic_weight" in optimization
        and "quant.quantizer.calibration_levels" in optimization
    )
    best = max(t["val/voc07_map"] for t in trials)
    assert f"best_value: {best}" in optimization  # Optuna saw the validation metric
