"""Loading a trained detector from its checkpoint, as a frozen teacher or as initial weights."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from torch import nn

from qmimic.checkpoints import check_matches, load_checkpoint
from qmimic.errors import UserError
from qmimic.models.detector import TwoStageDetector


def build_detector_from_config(config: dict) -> TwoStageDetector:
    """The detector a run's saved config describes, quantizers included (weights random)."""
    detector = instantiate(config["model"])
    plan = config.get("quant")
    if plan:
        instantiate(plan).apply(detector)
    return detector


def net_state(checkpoint: dict) -> dict:
    """The detector's tensors of a checkpoint (keys without the ``net.`` prefix)."""
    return {k[4:]: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}


def checkpoint_config(checkpoint: dict, path: str | Path) -> dict:
    """The run config saved in a loaded qmimic checkpoint.

    Raises:
        UserError: a checkpoint not written by qmimic (it holds no config).
    """
    config = checkpoint.get("qmimic_config")
    if config is None:
        raise UserError(f"{path} has no qmimic config; pass a checkpoint written by qmimic.train")
    return config


def detector_from_checkpoint(checkpoint: dict, path: str | Path) -> tuple[TwoStageDetector, dict]:
    """The detector stored in a loaded qmimic checkpoint, and the run config saved with it.

    Raises:
        UserError: a checkpoint not written by qmimic, or weights that do not fit the
        architecture its config describes.
    """
    config = checkpoint_config(checkpoint, path)
    detector = build_detector_from_config(config)
    state = net_state(checkpoint)
    check_matches(state, detector, path)
    detector.load_state_dict(state)
    return detector, config


def load_detector(path: str | Path) -> TwoStageDetector:
    """Rebuild and load the detector stored in the qmimic checkpoint at ``path``.

    Raises:
        UserError: missing/corrupt file, or see :func:`detector_from_checkpoint`.
    """
    return detector_from_checkpoint(load_checkpoint(path), path)[0]


def freeze(module: nn.Module) -> nn.Module:
    """No gradients, eval mode: a module that only ever computes targets."""
    module.requires_grad_(False)
    return module.eval()
