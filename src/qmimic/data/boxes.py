"""Ground-truth box clean-up shared by the readers: clip to the image, find degenerate boxes.

Readers record what they changed in the target under :data:`CLIPPED` and :data:`DROPPED` (ints),
so that :class:`~qmimic.data.report.DataReport` can count it in the main process, whatever
DataLoader worker read the sample.
"""

from __future__ import annotations

from torch import Tensor

CLIPPED = "clipped_boxes"  # target key: how many boxes were moved inside the image
DROPPED = "dropped_boxes"  # target key: how many degenerate boxes left a training target


def clip_to_image(boxes: Tensor, width: int, height: int) -> tuple[Tensor, int]:
    """Clamp float xyxy ``[M, 4]`` boxes to ``[0, width] x [0, height]``.

    Returns:
        the clipped boxes (a new tensor) and how many boxes changed.
    """
    clipped = boxes.clone()
    clipped[:, 0::2] = clipped[:, 0::2].clamp(0, width)
    clipped[:, 1::2] = clipped[:, 1::2].clamp(0, height)
    return clipped, int((clipped != boxes).any(dim=1).sum())


def degenerate(boxes: Tensor) -> Tensor:
    """bool ``[M]``: boxes with no area as the detector sees them (``x2 <= x1`` or ``y2 <= y1``)."""
    return (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])


def select(target: dict, keep: Tensor) -> dict:
    """``target`` with its per-box tensors (first dim ``M``) indexed by the bool mask ``keep``."""
    count = keep.shape[0]
    return {
        k: v[keep] if isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == count else v
        for k, v in target.items()
    }


def clean_target(target: dict, width: int, height: int, train: bool) -> dict:
    """Clip ``target["boxes"]`` to the image; for training also drop degenerate boxes.

    Evaluation targets keep every box, so that per-box flags (``difficult``, WIDER FACE setting
    masks indexed by face number) stay aligned with the files.
    """
    boxes, clipped = clip_to_image(target["boxes"], width, height)
    target = {**target, "boxes": boxes, CLIPPED: clipped, DROPPED: 0}
    if train:
        bad = degenerate(boxes)
        if bool(bad.any()):
            target = {**select(target, ~bad), DROPPED: int(bad.sum())}
    return target
