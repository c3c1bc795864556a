"""Reading checkpoints safely, and the one way to load a trained run.

Checkpoints are read with ``torch.load(weights_only=True)``: tensors, numbers, strings, lists and
dicts load, anything else is refused before it can run. Teachers are exactly the files users get
from others, and a pickle can call any function while it loads. qmimic's checkpoints hold only
plain data (the run's resolved config travels as ``checkpoint["qmimic_config"]``, the optimizer
factories stay out of the hyperparameters), so nothing needs more.

The saved config is data too, but rebuilding the detector instantiates its ``_target_`` entries;
a doctored config could name any function there. Only the constructors in
:data:`REBUILD_TARGETS` are instantiated from a checkpoint; anything else is refused.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from qmimic.errors import UserError
from qmimic.models.detector import TwoStageDetector
from qmimic.quant import QuantizationPlan

CONFIG_KEY = "qmimic_config"  # the run's resolved config (a plain dict)
CLASS_NAMES_KEY = "qmimic_class_names"  # names of labels 1..C
WANDB_ID_KEY = "qmimic_wandb_id"  # the run's wandb run, continued when the run resumes

# What the ``model``, ``quant`` and ``data`` sections of a saved config may instantiate.
REBUILD_TARGETS = frozenset({
    "qmimic.models.build_detector",
    "qmimic.quant.QuantizationPlan",
    "qmimic.quant.FeatureQuantizer",
    "qmimic.data.DetectionDataModule",
    "qmimic.data.VOCSource",
    "qmimic.data.VOCFolderSource",
    "qmimic.data.WiderFaceSource",
    "qmimic.data.ShapesSource",
    "qmimic.data.FacesSource",
    "qmimic.data.CocoSource",
})  # fmt: skip


def _refusal(path: Path, exc: pickle.UnpicklingError) -> UserError:
    reason = next(
        (line.strip() for line in str(exc).splitlines() if "unsupported global" in line.lower()),
        "it holds Python objects other than tensors and plain values",
    )
    return UserError(
        f"refusing to load {path}: {reason}. Loading such a file could run code from it. "
        "qmimic reads only plain-data checkpoints (tensors, numbers, strings, lists, dicts), as "
        "qmimic.train writes them; use a checkpoint from a qmimic run, and do not load this "
        "file elsewhere unless you trust where it came from."
    )


def _unreadable(path: Path, exc: Exception) -> UserError:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
    # torch's unpickler wraps the cause ("Unsupported operand 110") in advice that does not apply
    reason = next((line for line in lines if line.startswith("Unsupported")), lines[0][:160])
    return UserError(
        f"cannot read checkpoint {path}: it is truncated or not a checkpoint ({reason}). "
        "Use a .ckpt written by qmimic.train; a run cut short keeps its last complete one in "
        "checkpoints/last.ckpt."
    )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint onto the CPU, refusing anything but plain data.

    Raises:
        UserError: the file is missing, unreadable, holds objects beyond plain data, or is not
            a checkpoint with a ``state_dict``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(
            f"checkpoint not found: {path}\nPass the path of a .ckpt file written by "
            "qmimic.train (see the checkpoints/ folder of a run)."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" in str(exc).lower():  # a pickle of objects beyond plain data
            raise _refusal(path, exc) from None
        raise _unreadable(path, exc) from None
    except Exception as exc:  # corrupt zip, truncated file, not a torch file at all
        raise _unreadable(path, exc) from None
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


def net_state(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The detector's tensors of a checkpoint (keys without the LightningModule's ``net.``)."""
    return {k[4:]: v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}


def checkpoint_config(checkpoint: dict, path: str | Path) -> dict:
    """The run config saved in a loaded qmimic checkpoint.

    Raises:
        UserError: a checkpoint not written by qmimic (it holds no config).
    """
    config = checkpoint.get(CONFIG_KEY)
    if not isinstance(config, dict) or "model" not in config:
        raise UserError(f"{path} has no qmimic config; pass a checkpoint written by qmimic.train")
    for section in ("model", "quant", "data"):
        _check_targets(config.get(section), path, section)
    return config


def _check_targets(node: object, path: str | Path, where: str) -> None:
    """Refuse a saved config section that would instantiate anything but :data:`REBUILD_TARGETS`."""
    if isinstance(node, dict):
        target = node.get("_target_")
        if target is not None and target not in REBUILD_TARGETS:
            raise UserError(
                f"refusing to load {path}: its saved config would call {target!r} (at {where}), "
                "which is not a qmimic model, quantizer or data constructor. The file was not "
                "written by qmimic.train as it is; do not use it unless you trust where it "
                "came from."
            )
        for key, value in node.items():
            _check_targets(value, path, f"{where}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _check_targets(value, path, f"{where}[{index}]")


def quantization_plan(quant: Mapping | None) -> QuantizationPlan | None:
    """The ``quant`` config section as a plan, or ``None`` for no quantization: ``quant=none``
    (a stage's own ``quant.step_rule`` setting left on it names no quantizer), or a plan that
    places nothing (``quant.feature_map=false`` without ``patterns``)."""
    if not quant or not quant.get("_target_"):
        return None
    plan = instantiate(quant)
    return plan if plan.places_anything else None


def build_configured_detector(config: dict) -> TwoStageDetector:
    """The detector a run's config describes, quantizers included (weights random, as the
    checkpoint's replace them: no ImageNet weights are fetched or read)."""
    detector = instantiate({**config["model"], "pretrained": False, "weights_path": None})
    plan = quantization_plan(config.get("quant"))
    if plan is not None:
        plan.apply(detector)
    return detector


def _class_names(checkpoint: dict, config: dict) -> tuple[str, ...] | None:
    """Names of labels 1..C: stored in the checkpoint, else named by the config's data source
    when it names them on construction (nothing is read from disk: a source whose names come
    from its files, ``classes_from_files``, gives ``None`` here)."""
    names = checkpoint.get(CLASS_NAMES_KEY)
    if names:
        return tuple(names)
    config_source = config.get("data", {}).get("datamodule", {}).get("source")
    if config_source is None:
        return None
    source = instantiate(config_source)
    return None if getattr(source, "classes_from_files", False) else tuple(source.class_names)


@dataclass(frozen=True)
class TrainedRun:
    """A trained detector and what its checkpoint says about it.

    Attributes:
        detector: the detector with its trained weights, quantizers included, in train mode.
        config: the run's resolved config (``model``, ``quant``, ``data``, ...).
        class_names: names of labels 1..C, or ``None`` when the checkpoint cannot name them.
        path: the checkpoint file.
    """

    detector: TwoStageDetector
    config: dict
    class_names: tuple[str, ...] | None
    path: Path

    @property
    def num_classes(self) -> int:
        """Classes the detector predicts, background included."""
        return int(self.config["model"]["num_classes"])


def save_run(
    path: str | Path,
    detector: nn.Module,
    config: dict,
    class_names: tuple[str, ...] | list[str] | None = None,
) -> Path:
    """Write ``detector`` as a checkpoint :func:`load_run` reads: its tensors under ``net.``,
    the run ``config`` (a plain dict with at least ``model``; ``quant`` and ``data`` when the
    run had them) and the names of labels 1..C. ``qmimic.train`` writes the same keys through
    Lightning (:class:`~qmimic.io.callbacks.ConfigInCheckpoint`) beside its training state;
    this is the writer for detectors built or trained elsewhere (tests, benchmarks)."""
    path = Path(path).expanduser()
    checkpoint: dict[str, Any] = {
        "state_dict": {f"net.{k}": v for k, v in detector.state_dict().items()},
        CONFIG_KEY: config,
    }
    if class_names:
        checkpoint[CLASS_NAMES_KEY] = list(class_names)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def load_run(path: str | Path) -> TrainedRun:
    """Rebuild the detector of the qmimic checkpoint at ``path`` from the config saved in it,
    and load its weights. Used wherever a trained run is read: ``init_ckpt``, a distillation
    teacher, ``evaluate``, ``predict`` and ``export``.

    Raises:
        UserError: missing, corrupt or untrusted file, a checkpoint not written by qmimic, or
            weights that do not fit the architecture its config describes.
    """
    path = Path(path).expanduser()
    checkpoint = load_checkpoint(path)
    config = checkpoint_config(checkpoint, path)
    detector = build_configured_detector(config)
    state = net_state(checkpoint)
    check_matches(state, detector, path)
    detector.load_state_dict(state)
    return TrainedRun(detector, config, _class_names(checkpoint, config), path)
