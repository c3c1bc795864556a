"""``python -m qmimic.export ckpt=PATH ...``: see :mod:`qmimic.export`."""

from __future__ import annotations

from qmimic.export.command import main

if __name__ == "__main__":
    main()
