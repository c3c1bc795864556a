"""``results.json``: what a run measured, written so that a crash never leaves half a file."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented JSON through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)
    return path


def format_metrics(metrics: dict[str, float]) -> str:
    """One ``name  value`` line per metric, for the console."""
    width = max((len(k) for k in metrics), default=0)
    return "\n".join(f"  {k:<{width}}  {v:.4f}" for k, v in sorted(metrics.items()))
