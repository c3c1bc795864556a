"""``results.json`` and other run files: written so that a crash never leaves half a file.

Every file a run writes for later reading (``config.yaml``, ``results.json``, summaries, the
per-class table) goes through :func:`write_text`: a temporary file beside the target, renamed over
it once complete. Checkpoints are written the same way by Lightning (an fsspec transaction), and
ONNX exports by :mod:`qmimic.cli.export`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from qmimic.drawing import class_name
from qmimic.errors import UserError
from qmimic.metrics.names import SKIPPED, key


def check_output_folder(path: str | Path, setting: str) -> None:
    """Refuse, before anything is written, an output folder that cannot be made: ``path`` or
    one of its parents is a file, or the nearest existing parent is not writable.

    Raises:
        UserError: naming ``setting`` (the option that chose the folder) and the fix.
    """
    path = Path(path).expanduser().absolute()
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                raise UserError(
                    f"{setting}={path}: {folder} is a file, not a folder; choose another "
                    f"{setting} (or move the file away)"
                )
            if not os.access(folder, os.W_OK | os.X_OK):
                raise UserError(
                    f"{setting}={path}: cannot write in {folder}; choose a {setting} you can "
                    "write to"
                )
            return


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file beside it and an atomic rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise UserError(
            f"cannot write {path} ({exc.strerror}); choose an output folder you can write to"
        ) from None
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON (keys sorted), atomically (see :func:`write_text`)."""
    return write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def record_left_out(output_dir: str | Path, left_out: dict[str, list[str]]) -> dict[str, int]:
    """``{"<split>/skipped": count}`` for every split in ``left_out`` (split -> messages of the
    samples left out of it, each naming its file), and, when any was left out, the messages in
    ``output_dir/skipped.json``: what each metric of the run was computed without."""
    counts = {key(split, SKIPPED): len(messages) for split, messages in left_out.items()}
    if any(counts.values()):
        write_json(Path(output_dir) / "skipped.json", {s: m for s, m in left_out.items() if m})
    return counts


def per_class_ap(computed: dict, class_names: tuple[str, ...] | None) -> dict[str, float]:
    """``{class name: VOC07 AP}`` from a test's computed metrics (``voc07_classes`` and
    ``voc07_ap_per_class``, see :class:`~qmimic.modules.evaluation.DetectionMetrics`), for the
    classes with at least one non-difficult object; ``{}`` for another protocol."""
    classes, aps = computed.get("voc07_classes"), computed.get("voc07_ap_per_class")
    if classes is None or aps is None:
        return {}
    labels = classes.reshape(-1).tolist()
    values = aps.reshape(-1).tolist()
    return {
        class_name(int(label), class_names): float(ap)
        for label, ap in zip(labels, values, strict=True)
    }


def per_class_markdown(aps: dict[str, float], mean: float | None = None) -> str:
    """The ``per_class_ap.md`` table: VOC07 AP per class in points, and the mean."""
    lines = ["| class | AP (VOC07, IoU 0.5) |", "|---|---|"]
    lines += [f"| {name} | {100 * ap:.1f} |" for name, ap in aps.items()]
    if mean is not None:
        lines.append(f"| **mean** | **{100 * mean:.1f}** |")
    return "\n".join(lines) + "\n"
