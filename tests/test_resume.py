"""A run stopped by a real SIGINT in the middle of an epoch and resumed from ``last.ckpt`` ends
where the uninterrupted run ends: same weights, same test metrics.

Three tiny training runs as subprocesses (about a minute): ``slow``, run with ``make test-slow``.
What makes the resume exact is unit-tested in the default run (``tests/runs/test_resume_state.py``).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from helpers import tiny_overrides

TESTS = Path(__file__).parent
STEPS_PER_EPOCH = 4  # the tiny split's 8 images in batches of 2


def _train(run_dir: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess:
    path = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    command = [
        sys.executable, "-m", "qmimic.train", "+experiment=scratch_shapes",
        *tiny_overrides(cache, run_dir.parent), f"hydra.run.dir={run_dir}", "seed=3",
        "data.batch_size=2", "trainer.max_epochs=3", "trainer.limit_val_batches=1", *extra,
    ]  # fmt: skip
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=300, preexec_fn=_default_sigint
    )


def _default_sigint() -> None:
    """In the child, SIGINT as in a terminal: a shell starts background jobs (a CI runner's,
    say) with SIGINT ignored, and children inherit that, so Ctrl-C would never arrive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _logged_steps(*files: Path) -> set[int]:
    return {int(row["step"]) for f in files for row in csv.DictReader(f.open())}


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_sigint_mid_epoch_then_resume_reproduces_the_uninterrupted_run(shapes_cache, tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    interrupt = [
        "+callbacks.interrupt._target_=interrupt.SigintAt",
        f"+callbacks.interrupt.step={STEPS_PER_EPOCH + 2}",  # two steps into the second epoch
    ]
    with ThreadPoolExecutor(2) as pool:
        uninterrupted = pool.submit(_train, whole, shapes_cache)
        stopped = pool.submit(_train, cut, shapes_cache, *interrupt).result()
        uninterrupted = uninterrupted.result()
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    assert stopped.returncode != 0 and "Traceback" not in stopped.stderr
    assert not (cut / "results.json").exists()
    interrupted = cut / "checkpoints" / "interrupted.ckpt"
    state = torch.load(interrupted, map_location="cpu", weights_only=True)
    assert state["global_step"] == STEPS_PER_EPOCH + 2  # the steps done are kept too
    assert torch.load(cut / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == (
        STEPS_PER_EPOCH
    )
    assert f"ckpt_path={cut / 'checkpoints' / 'last.ckpt'}" in stopped.stdout + stopped.stderr

    resumed = _train(cut, shapes_cache, f"ckpt_path={cut / 'checkpoints' / 'last.ckpt'}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, got = _weights(whole), _weights(cut)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6, msg=name)
    metrics = json.loads((whole / "results.json").read_text())
    again = json.loads((cut / "results.json").read_text())
    assert again["steps"] == metrics["steps"] == 3 * STEPS_PER_EPOCH
    assert metrics["test/voc07_map"] > 0  # a run that learnt something, or equality means little
    for key in ("test/voc07_map", "test/map", "test/map_50"):
        assert abs(again[key] - metrics[key]) < 1e-6, (key, again[key], metrics[key])
    kept = cut / "csv" / "metrics.before-resume-1.csv"  # the epochs before the cut, not lost
    assert _logged_steps(kept) and min(_logged_steps(kept)) < STEPS_PER_EPOCH
    assert _logged_steps(whole / "csv" / "metrics.csv") <= _logged_steps(
        kept, cut / "csv" / "metrics.csv"
    )
