"""Writing a generated dataset into a cache folder exactly once, atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from qmimic.errors import UserError


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
