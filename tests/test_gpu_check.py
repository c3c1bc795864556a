"""``make gpu-check`` runs: its script, dry-run on the CPU, prints its table and passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_script_runs_its_steps_on_the_cpu(tmp_path: Path):
    out = tmp_path / "gpu_check.md"
    result = subprocess.run(
        [sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--steps", "2",
         "--repeats", "1", "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = out.read_text()
    for check in (
        "teacher 32-true",
        "teacher bf16-mixed",
        "qmimic student bf16-mixed",
        "teacher, DDP on one device",
        "latency 600x1000, student ResNet18-1-16",
    ):
        assert f"| {check} |" in table
    assert "| NO |" not in table
