"""Logger factories whose defaults need a decision at run time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger


def wandb_is_configured() -> bool:
    """True when the user has given wandb credentials or chosen a mode explicitly."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def wandb_logger(*, offline: bool | None = None, **kwargs: Any) -> WandbLogger:
    """A ``WandbLogger`` that runs offline unless wandb has been configured on this machine.

    ``offline=None`` decides from the environment; True/False force the mode. Offline runs can
    be uploaded later with ``wandb sync <save_dir>/wandb/offline-run-*``.
    """
    if offline is None:
        offline = not wandb_is_configured()
    return WandbLogger(offline=offline, **kwargs)
