"""The width multiplier: how a layer's channel count shrinks for a narrow ("very tiny") network."""

from __future__ import annotations

import math

# Absorbs float error in products such as 48 * (1/3), which must give 16, not 15.
_EPS = 1e-6


def scale_channels(channels: int, width: float) -> int:
    """Channels of a layer at ``width`` times its original size.

    Rounds down, so that a layer never has more than ``width`` of its original channels (a
    "1/16" network is at most 1/16 wide everywhere), but never below one channel.
    """
    if not 0 < width <= 1:
        raise ValueError(f"width must be in (0, 1], got {width}")
    return max(1, math.floor(channels * width + _EPS))
