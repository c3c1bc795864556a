"""Lightning callbacks that keep a run's work safe and its outputs self-describing."""

from __future__ import annotations

import sys
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import OnExceptionCheckpoint


class InterruptCheckpoint(OnExceptionCheckpoint):
    """Save ``<dirpath>/last.ckpt`` when training stops on Ctrl-C or an error, and say how to
    resume. Lightning then exits with a non-zero status."""

    def __init__(self, dirpath: str, filename: str = "last"):
        super().__init__(dirpath=dirpath, filename=filename)

    def on_exception(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if trainer.state.fn != "fit":
            return  # nothing is learned during validate/test; keep the last training state
        super().on_exception(trainer, *args, **kwargs)
        if trainer.is_global_zero:
            print(
                f"\nTraining stopped; state saved to {self.ckpt_path}\n"
                f"Resume with the same overrides plus: ckpt_path={self.ckpt_path}",
                file=sys.stderr,
                flush=True,
            )


class ConfigInCheckpoint(L.Callback):
    """Store the run's resolved config in every checkpoint (``checkpoint["qmimic_config"]``),
    so a checkpoint alone is enough to rebuild its detector."""

    def __init__(self, config: dict):
        self.config = config

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict) -> None:
        checkpoint["qmimic_config"] = self.config
