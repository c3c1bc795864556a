"""What the readers fixed or skipped, tallied in the main process and reported once.

Samples may be read in DataLoader worker processes, whose counters never reach the main process.
So readers write what they did into each target (:data:`~qmimic.data.boxes.CLIPPED`,
:data:`~qmimic.data.boxes.DROPPED`, :data:`SKIPPED`), and :class:`DataReport` takes those keys
out of every batch that reaches the model, keyed by image id so that later epochs do not count
the same image again.
"""

from __future__ import annotations

import warnings

from qmimic.data.boxes import CLIPPED, DROPPED

SKIPPED = "skipped_samples"  # target key: messages of bad samples skipped to reach this one
SHOWN = 3  # how many file names a summary quotes


class DataWarning(UserWarning):
    """Something in the dataset was fixed or skipped; the message says how much and where."""


class DataReport:
    """Counts of clipped boxes, dropped degenerate boxes and skipped bad samples."""

    def __init__(self) -> None:
        self.clipped: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.skipped: dict[str, None] = {}  # insertion-ordered set of messages

    def skip(self, message: str) -> None:
        """Record one bad sample (its message names the file, and the line for text formats)."""
        self.skipped.setdefault(message, None)

    def take(self, targets: list[dict]) -> None:
        """Remove the bookkeeping keys from ``targets`` (in place) and count them."""
        for target in targets:
            image_id = str(target.get("image_id", id(target)))
            clipped, dropped = target.pop(CLIPPED, 0), target.pop(DROPPED, 0)
            if clipped:
                self.clipped[image_id] = int(clipped)
            if dropped:
                self.dropped[image_id] = int(dropped)
            for message in target.pop(SKIPPED, ()):
                self.skip(message)

    def summary(self) -> list[str]:
        """One line per kind of event, empty when nothing happened."""
        lines = []
        if self.clipped:
            lines.append(
                f"clipped {sum(self.clipped.values())} boxes reaching beyond their image in "
                f"{len(self.clipped)} images (e.g. {_first(self.clipped)})"
            )
        if self.dropped:
            lines.append(
                f"dropped {sum(self.dropped.values())} degenerate boxes (zero width or height) "
                f"from the training targets of {len(self.dropped)} images "
                f"(e.g. {_first(self.dropped)})"
            )
        if self.skipped:
            lines.append(
                f"skipped {len(self.skipped)} bad samples (data.on_bad_sample=skip): "
                + "; ".join(list(self.skipped)[:SHOWN])
                + (" ..." if len(self.skipped) > SHOWN else "")
            )
        return lines

    def flush(self, stage: str) -> None:
        """Warn with :meth:`summary` (if anything happened) and start counting afresh."""
        for line in self.summary():
            warnings.warn(f"data ({stage}): {line}", DataWarning, stacklevel=2)
        self.__init__()


def _first(counts: dict[str, int]) -> str:
    return ", ".join(list(counts)[:SHOWN])
