"""Ctrl-C during a pipeline or study stage: the training run is let finish saving its state."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from qmimic.runs.stage_runs import wait_through_ctrl_c

# A stand-in training run: on SIGINT it takes a moment to save, then exits 1 (as Lightning does).
CHILD = """
import pathlib, signal, sys, time
def stop(*_):
    time.sleep(0.3)
    pathlib.Path(sys.argv[1]).write_text("saved")
    sys.exit(1)
signal.signal(signal.SIGINT, stop)
print("ready", flush=True)
time.sleep(60)
"""


class CtrlCOnFirstWait(subprocess.Popen):
    """A child whose parent is interrupted while it first waits for it."""

    interrupted = False

    def wait(self, timeout: float | None = None) -> int:
        if not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt
        return super().wait(timeout)


def start(marker: Path) -> CtrlCOnFirstWait:
    child = CtrlCOnFirstWait(
        [sys.executable, "-c", CHILD, str(marker)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline() == "ready\n"  # its SIGINT handler is in place
    return child


@pytest.mark.parametrize("child_signalled", [True, False], ids=["terminal", "parent only"])
def test_ctrl_c_waits_for_the_run_to_save_then_stops(tmp_path: Path, child_signalled: bool):
    marker = tmp_path / "saved"
    child = start(marker)
    if child_signalled:  # a terminal's Ctrl-C reaches the whole process group
        child.send_signal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        wait_through_ctrl_c(child, grace_s=0.5 if not child_signalled else 30)
    assert marker.read_text() == "saved" and child.returncode == 1
