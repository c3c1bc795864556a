"""qmimic as a library: the wheel carries its configs and runs outside the repository, and the
library never imports a command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from helpers import save_untrained_checkpoint, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "qmimic"
COMMANDS = ("train", "evaluate", "predict", "pipeline")  # the ``python -m qmimic.X`` entry files


def test_the_wheel_installs_and_trains_outside_the_repository(shapes_cache: Path, tmp_path: Path):
    wheels, site, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    work.mkdir()
    # A copy of what the build reads, so that the build's own folders stay out of the checkout.
    source = tmp_path / "source"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    built = subprocess.run(
        [*pip, "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(wheels)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("qmimic-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "qmimic/conf/train.yaml" in names and "qmimic/conf/stage/qmimic.yaml" in names
    assert "qmimic/conf/recipe/shapes.yaml" in names
    assert "qmimic/conf/hydra/job_logging/qmimic.yaml" in names
    installed = subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    # The installed copy comes first on the path, ahead of the development checkout.
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import qmimic; print(qmimic.__file__)"],
        cwd=work, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr
    overrides = [*tiny_overrides(shapes_cache, work / "logs"), "trainer.fast_dev_run=true"]
    trained = subprocess.run(
        [str(site / "bin" / "qmimic-train"), "+experiment=qmimic_shapes", *overrides,
         f"teacher_ckpt={_teacher(shapes_cache, tmp_path)}"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert list((work / "logs").rglob("results.json")), "the run wrote no results.json"


def _teacher(shapes_cache: Path, tmp_path: Path) -> Path:
    overrides = tiny_overrides(shapes_cache, tmp_path / "teacher_logs")
    return save_untrained_checkpoint("qteacher_shapes", overrides, tmp_path / "qteacher.ckpt")
