"""Reading checkpoints with errors a user can act on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from qmimic.errors import UserError


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint onto the CPU.

    Raises:
        UserError: the file is missing, unreadable, or not a checkpoint with a ``state_dict``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(
            f"checkpoint not found: {path}\nPass the path of a .ckpt file written by "
            "qmimic.train (see the checkpoints/ folder of a run)."
        )
    try:
        # Our checkpoints hold hyperparameters (optimizer factories), so full unpickling is
        # needed; only load checkpoints you trust.
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # corrupt zip, truncated file, not a torch file at all
        raise UserError(f"cannot read checkpoint {path}: {exc}") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"{path} is not a Lightning checkpoint (no 'state_dict' in it)")
    return checkpoint


def check_matches(
    state_dict: dict[str, torch.Tensor], module: nn.Module, path: str | Path, prefix: str = ""
) -> None:
    """Raise :class:`UserError` unless ``state_dict`` (keys under ``prefix``) fits ``module``
    exactly: same parameter names and shapes."""
    expected = {f"{prefix}{k}": v.shape for k, v in module.state_dict().items()}
    found = {k: v.shape for k, v in state_dict.items() if k.startswith(prefix)}
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    if not (missing or unexpected or wrong):
        return
    details = []
    if wrong:
        k = wrong[0]
        details.append(
            f"{len(wrong)} tensors differ in shape (e.g. {k}: checkpoint "
            f"{tuple(found[k])}, model {tuple(expected[k])})"
        )
    if missing:
        details.append(f"{len(missing)} tensors missing (e.g. {missing[0]})")
    if unexpected:
        details.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
    raise UserError(
        f"checkpoint {path} does not match the configured model: {'; '.join(details)}.\n"
        "Use the same model/data settings (arch, framework, width, classes) as the run that "
        "wrote it."
    )
