"""The cache of the generated datasets: where it is, how a spec names its folder, and writing a
generated tree into it exactly once, atomically."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from qmimic.errors import UserError

# Also the ``paths.cache_dir`` of the configs; this is the default of code that builds a source
# directly.
DEFAULT_CACHE = os.environ.get("QMIMIC_CACHE", "~/.cache/qmimic")


def spec_key(spec: Any, version: int) -> str:
    """Short stable digest of a generator spec (a dataclass) and the generator's ``version``,
    naming the spec's cache folder."""
    payload = json.dumps({**asdict(spec), "version": version}, sort_keys=True)
    return hashlib.sha1(payload.encode()).hexdigest()[:10]


def spec_fields(fields: dict[str, object]) -> dict[str, object]:
    """Spec fields as given in a config, lists (OmegaConf's ``ListConfig`` too) as tuples, so
    that specs stay hashable and their keys do not depend on how a field was written."""
    return {
        k: tuple(v) if isinstance(v, Sequence) and not isinstance(v, str) else v
        for k, v in fields.items()
    }


def write_once(
    cache_dir: str | Path, folder: str, marker: str, write_tree: Callable[[Path], None]
) -> Path:
    """``cache_dir/folder``, created by ``write_tree(staging)`` unless it already holds ``marker``.

    The tree is written into a temporary folder and renamed into place, so an interrupted run
    never leaves a half-written dataset; ``write_tree`` must write ``marker`` last.

    Raises:
        UserError: ``cache_dir`` cannot be created or written.
    """
    cache_dir = Path(cache_dir).expanduser()
    root = cache_dir / folder
    if (root / marker).is_file():
        return root
    name = folder.split("-")[0]
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache_dir))
    except OSError as exc:
        raise UserError(
            f"cannot write the built-in {name} dataset to {cache_dir}: {exc.strerror or exc}\n"
            "Set data.root to a writable folder (or the QMIMIC_CACHE environment variable)."
        ) from None
    try:
        write_tree(staging)
        os.replace(staging, root)
    except OSError as exc:
        if (root / marker).is_file():  # another process finished first
            return root
        raise UserError(f"cannot write the built-in {name} dataset to {root}: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root
