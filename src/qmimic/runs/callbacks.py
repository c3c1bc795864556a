"""Lightning callbacks that keep a run's work safe and its outputs self-describing."""

from __future__ import annotations

from pathlib import Path

import lightning as L

from qmimic.errors import find_user_error
from qmimic.runs.checkpoints import CLASS_NAMES_KEY, CONFIG_KEY
from qmimic.runs.log import get_logger

log = get_logger(__name__)


class ResumeHint(L.Callback):
    """When training stops on Ctrl-C or an error, say how to resume from ``last.ckpt``.

    The checkpoint itself is written by the ``ModelCheckpoint`` configured with
    ``save_on_exception: true`` (see ``conf/callbacks/default.yaml``).
    """

    def __init__(self, checkpoint: str):
        self.checkpoint = Path(checkpoint)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if trainer.state.fn != "fit" or trainer.global_step == 0:
            return
        if find_user_error(exception) is not None or not trainer.is_global_zero:
            return
        log.warning(
            "Training stopped at step %d; its state goes to %s\n"
            "Resume with the same overrides plus: ckpt_path=%s",
            trainer.global_step,
            self.checkpoint,
            self.checkpoint,
        )


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
