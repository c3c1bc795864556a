"""``data.on_bad_sample``: stop at a bad sample, or skip it and carry on."""

from __future__ import annotations

from torch import Tensor
from torch.utils.data import Dataset

from qmimic.data.images import BadSampleError
from qmimic.data.report import SKIPPED
from qmimic.errors import UserError

POLICIES = ("raise", "skip")


def check_policy(on_bad_sample: str) -> str:
    if on_bad_sample not in POLICIES:
        raise UserError(
            f"data.on_bad_sample={on_bad_sample!r} is not a choice; "
            f"use one of {', '.join(POLICIES)}"
        )
    return on_bad_sample


class SkipBadSamples(Dataset):
    """Wraps a dataset whose items may raise :class:`BadSampleError`.

    A bad item is replaced by the next good one (wrapping around), which carries the skipped
    items' messages under :data:`~qmimic.data.report.SKIPPED` for the report. The length stays
    that of the wrapped dataset, so samplers and epoch sizes do not change.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        skipped: list[str] = []
        for offset in range(len(self)):
            try:
                image, target = self.dataset[(index + offset) % len(self)]
            except BadSampleError as exc:
                skipped.append(str(exc))
                continue
            if skipped:
                target = {**target, SKIPPED: skipped}
            return image, target
        raise UserError(f"every sample of this split is bad; the first: {skipped[0]}")
