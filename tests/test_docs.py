"""The documentation site builds with warnings as errors: every page, link and API docstring."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_docs_build_strictly(tmp_path: Path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    api = (tmp_path / "api" / "index.html").read_text()
    assert "DistillModule" in api and "save_run" in api  # the reference comes from docstrings
    for page in ("method", "data", "training", "scaling", "export", "results", "development"):
        assert (tmp_path / page / "index.html").is_file()


def test_the_license_matches_the_package_metadata():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert 'license = "MIT"' in (ROOT / "pyproject.toml").read_text()
