"""Shared fixtures: small generated datasets under tmp paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import TINY_SPEC
from qmimic.data.synthetic.shapes import ensure_shapes


@pytest.fixture(scope="session")
def shapes_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder holding the tiny shapes tree for :data:`TINY_SPEC`."""
    cache = tmp_path_factory.mktemp("cache")
    ensure_shapes(cache, TINY_SPEC)
    return cache
