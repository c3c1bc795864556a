"""Lightning callbacks that keep a run's work safe and its outputs self-describing."""

from __future__ import annotations

import random
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger

from qmimic.errors import find_user_error
from qmimic.io.checkpoints import CLASS_NAMES_KEY, CONFIG_KEY, WANDB_ID_KEY
from qmimic.log import get_logger

log = get_logger(__name__)


class ResumeHint(L.Callback):
    """When training stops on Ctrl-C or an error, say how to resume.

    ``checkpoints/last.ckpt`` holds the latest epoch end: resuming from it runs the interrupted
    epoch again from its start, exactly as an uninterrupted run does (with
    :class:`RandomStateInCheckpoint` and the data module's saved training order).
    ``checkpoints/interrupted.ckpt`` is the state at the step training stopped (the
    ``ModelCheckpoint`` with ``save_on_exception: true`` in ``conf/callbacks/default.yaml``):
    resuming from it keeps those steps, but Lightning's loop cannot replay the rest of that
    epoch's batches as they would have come, so the run is not bit-exact.
    """

    def __init__(self, checkpoints: str):
        self.checkpoints = Path(checkpoints)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if trainer.state.fn != "fit" or trainer.global_step == 0:
            return
        if find_user_error(exception) is not None or not trainer.is_global_zero:
            return
        last, interrupted = self.checkpoints / "last.ckpt", self.checkpoints / "interrupted.ckpt"
        if last.is_file():
            exact = f"ckpt_path={last} (runs epoch {trainer.current_epoch} again from its start)"
        else:
            exact = "nothing (no epoch ended yet: the same command starts afresh)"
        log.warning(
            "Training stopped at step %d (epoch %d). To reproduce an uninterrupted run, resume "
            "with the same overrides plus %s; to keep the steps done since, use "
            "ckpt_path=%s (not bit-exact)",
            trainer.global_step,
            trainer.current_epoch,
            exact,
            interrupted,
        )


class RandomStateInCheckpoint(L.Callback):
    """Save the random generators' states (torch, CUDA, NumPy, Python) with every checkpoint and
    restore them on resume, so that a run resumed from an epoch end draws the same flips and RoI
    samples as the uninterrupted run.

    Lightning checkpoints the loops, optimizers and schedulers but not these states, and its
    helpers for them are private; hence this callback. Under DDP every process was seeded
    alike (``seed_everything``), so rank 0's states stand for all.
    """

    def state_dict(self) -> dict:
        state = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": _numpy_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        torch.set_rng_state(state_dict["torch"])
        version, internal, gauss = state_dict["python"]
        random.setstate((version, tuple(internal), gauss))
        name, keys, position, has_gauss, cached = state_dict["numpy"]
        np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class WallTimeInCheckpoint(L.Callback):
    """Carry a run's wall time across resumes: every checkpoint records the time the run has
    spent so far, and a run resumed from it counts on from there, so that ``results.json``'s
    ``wall_time_s`` is the whole run's, not only its last process's (a study's training cost
    adds these up). The time a cut process spent after its last checkpoint was lost work and is
    not counted.

    Args:
        started: ``time.perf_counter()`` when this process began the run.
    """

    def __init__(self, started: float) -> None:
        self.started = started
        self.before = 0.0  # seconds the run's earlier processes spent, from the checkpoint

    def elapsed(self) -> float:
        """Seconds the run has spent, its earlier processes included."""
        return self.before + time.perf_counter() - self.started

    def state_dict(self) -> dict:
        return {"wall_time_s": self.elapsed()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.before = float(state_dict.get("wall_time_s", 0.0))


def _numpy_state() -> tuple:
    """NumPy's global state as plain Python values (checkpoints load with weights_only=True)."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    return name, keys.tolist(), int(position), int(has_gauss), float(cached)


class ConfigInCheckpoint(L.Callback):
    """Store the run's resolved config in every checkpoint (``checkpoint["qmimic_config"]``),
    so a checkpoint alone is enough to rebuild its detector, and the data's class names
    (``checkpoint["qmimic_class_names"]``, label 1 first) so that predictions can be named."""

    def __init__(self, config: dict):
        self.config = config

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict
    ) -> None:
        checkpoint[CONFIG_KEY] = self.config
        class_names = getattr(getattr(trainer, "datamodule", None), "class_names", None)
        if class_names is not None:
            checkpoint[CLASS_NAMES_KEY] = list(class_names)


class WandbRunInCheckpoint(L.Callback):
    """Store the id of the run's wandb run in every checkpoint
    (``checkpoint["qmimic_wandb_id"]``), so that a run resumed from it logs on into the same
    wandb run instead of starting a new one (see
    :func:`~qmimic.io.loggers.instantiate_loggers`)."""

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict
    ) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                checkpoint[WANDB_ID_KEY] = str(logger.version)
