"""What the readers fixed or left out, tallied in the main process and reported once.

Samples may be read in DataLoader worker processes, whose counters never reach the main process.
So readers write what they did into each target (:data:`~qmimic.data.boxes.CLIPPED`,
:data:`~qmimic.data.boxes.DROPPED`, :data:`SKIPPED`), and :class:`DataReport` takes those keys
out of every batch that reaches the model, keyed by image id so that later epochs do not count
the same image again. Samples left out of a split (missing files, found before reading; files
that cannot be read, under ``data.on_bad_sample=skip``) are kept per split for the whole run, so
that results can say what every metric was computed without.
"""

from __future__ import annotations

import warnings

from qmimic.data.boxes import CLIPPED, DROPPED

SKIPPED = "skipped_samples"  # target key: (split, message) of the bad samples left out of a batch
SHOWN = 3  # how many file names a summary quotes


class DataWarning(UserWarning):
    """Something in the dataset was fixed or left out; the message says how much and where."""


class DataReport:
    """Counts of clipped boxes and dropped degenerate boxes (since the last :meth:`flush`), and
    the bad samples left out of each split (for the whole run)."""

    def __init__(self) -> None:
        self.clipped: dict[str, int] = {}
        self.dropped: dict[str, int] = {}
        self.left_out: dict[str, dict[str, None]] = {}  # split -> insertion-ordered messages
        self._reported: dict[str, int] = {}  # split -> messages already warned about

    def skip(self, message: str, split: str) -> None:
        """Record one bad sample left out of ``split`` (its message names the file)."""
        self.left_out.setdefault(split, {}).setdefault(message, None)

    def skipped(self, split: str) -> list[str]:
        """The messages of the samples left out of ``split`` so far."""
        return list(self.left_out.get(split, {}))

    def take(self, targets: list[dict]) -> None:
        """Remove the bookkeeping keys from ``targets`` and count them; a batch whose samples
        were all left out holds one target with nothing but :data:`SKIPPED`, removed here, so
        ``targets`` is then empty (in place)."""
        for target in targets:
            image_id = str(target.get("image_id", id(target)))
            clipped, dropped = target.pop(CLIPPED, 0), target.pop(DROPPED, 0)
            if clipped:
                self.clipped[image_id] = int(clipped)
            if dropped:
                self.dropped[image_id] = int(dropped)
            for split, message in target.pop(SKIPPED, ()):
                self.skip(message, split)
        targets[:] = [t for t in targets if t]

    def summary(self) -> list[str]:
        """One line per kind of event not reported yet, empty when nothing happened."""
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
        for split, messages in self.left_out.items():
            if len(messages) > self._reported.get(split, 0):
                listed = list(messages)
                lines.append(
                    f"left {len(listed)} bad samples out of the {split} split "
                    "(data.on_bad_sample=skip; its metrics count only the samples that remain; "
                    "skipped.json in the run folder lists them): "
                    + "; ".join(listed[:SHOWN])
                    + (" ..." if len(listed) > SHOWN else "")
                )
        return lines

    def flush(self, stage: str) -> None:
        """Warn with :meth:`summary` (if anything happened) and start counting boxes afresh."""
        for line in self.summary():
            warnings.warn(f"data ({stage}): {line}", DataWarning, stacklevel=2)
        self.clipped, self.dropped = {}, {}
        self._reported = {split: len(m) for split, m in self.left_out.items()}


def _first(counts: dict[str, int]) -> str:
    return ", ".join(list(counts)[:SHOWN])
