"""A callback that interrupts training with a real SIGINT (as Ctrl-C does) at a given step;
loaded by subprocess runs in tests through ``+callbacks.interrupt._target_=interrupt.SigintAt``."""

from __future__ import annotations

import os
import signal

import lightning as L


class SigintAt(L.Callback):
    """Send this process SIGINT once ``trainer.global_step`` reaches ``step``."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGINT)
