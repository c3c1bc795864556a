"""What the VOC and WIDER FACE metrics share: checking inputs, matching detections to ground truth
by overlap with the devkits' +1 pixel convention, and the area under the precision envelope.

Written by hand for the same reason as :mod:`qmimic.metrics.voc`: both official protocols match
with inclusive-pixel overlaps and a greedy rule that torchvision's ``box_iou`` and torchmetrics'
COCO matching do not reproduce.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

# Pairs (detection, candidate ground truth) whose IoU is evaluated at once: bounds peak memory
# to about 100 MB whatever the number of boxes per image (crowded WIDER FACE images give tens
# of millions of pairs). Measured on CPU: near the fastest both with idle cores (smaller chunks
# stay in cache) and with busy ones (fewer, larger parallel kernels wait less for a core).
_MAX_PAIRS = 1 << 20


def as_boxes(boxes: Tensor, what: str) -> Tensor:
    """Validate a [N, 4] box tensor; an empty tensor of any shape becomes [0, 4]."""
    if boxes.numel() == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{what} must have shape [N, 4], got {tuple(boxes.shape)}")
    return boxes


def check_length(x: Tensor, n: int, what: str) -> Tensor:
    """Flatten ``x`` and check it has ``n`` elements (one per box)."""
    x = x.reshape(-1)
    if x.numel() != n:
        raise ValueError(f"{what} has {x.numel()} elements for {n} boxes")
    return x


def image_ids(counts: Tensor) -> Tensor:
    """Image index of every box, from per-image box counts (int64 [n_images] -> [sum])."""
    counts = counts.long()
    return torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)


def pair_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of boxes ``a[i]`` and ``b[i]`` with the devkit's +1 pixel convention.

    Args:
        a: float [P, 4] boxes (x1, y1, x2, y2), inclusive pixel coordinates.
        b: float [P, 4] boxes, same layout.

    Returns:
        float [P] overlaps in [0, 1]; 0 for disjoint boxes. The operations follow the devkit's
        order (area of ``a`` + area of ``b`` - intersection) so that boundary cases such as an
        overlap of exactly 0.5 compare the same way.
    """
    # Columns (x, y) handled together: fewer kernel launches, same arithmetic per element.
    extent = torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2]) + 1.0
    extent = extent.clamp(min=0.0)
    inter = extent[:, 0] * extent[:, 1]
    size_a = a[:, 2:] - a[:, :2] + 1.0
    size_b = b[:, 2:] - b[:, :2] + 1.0
    union = size_a[:, 0] * size_a[:, 1] + size_b[:, 0] * size_b[:, 1] - inter
    # inter > 0 implies both boxes have positive extent, hence union > 0; the other branch
    # avoids 0/0 for degenerate boxes.
    return torch.where(inter > 0, inter / union, torch.zeros_like(inter))


def best_overlaps(
    det_boxes: Tensor,
    det_group: Tensor,
    gt_boxes: Tensor,
    gt_group: Tensor,
    max_pairs: int = _MAX_PAIRS,
) -> tuple[Tensor, Tensor]:
    """For each detection, the ground truth of the same group with the largest IoU.

    Only pairs within a group (e.g. same image and class) are evaluated: ground truths are
    sorted by group, each detection finds its group's slice with ``searchsorted``, and the
    ragged set of pairs is expanded in chunks of about ``max_pairs``.

    Args:
        det_boxes: float [D, 4] detection boxes (xyxy, pixels).
        det_group: int64 [D] group key of each detection.
        gt_boxes: float [G, 4] ground-truth boxes.
        gt_group: int64 [G] group key of each ground truth.
        max_pairs: chunk size bounding memory.

    Returns:
        ``(best_iou, best_idx)``: float64 [D] largest IoU (-1 when the group has no ground
        truth) and int64 [D] index into the ground truths (-1 when none). On equal IoU the
        ground truth given first wins, like ``np.argmax``.
    """
    device = det_boxes.device
    n_det, n_gt = det_boxes.shape[0], gt_boxes.shape[0]
    best_iou = torch.full((n_det,), -1.0, dtype=torch.float64, device=device)
    best_idx = torch.full((n_det,), -1, dtype=torch.long, device=device)
    if n_det == 0 or n_gt == 0:
        return best_iou, best_idx

    # Stable, so that within a group sorted position order is the original order.
    gt_order = torch.argsort(gt_group, stable=True)
    sorted_group = gt_group[gt_order]
    lo = torch.searchsorted(sorted_group, det_group, side="left")
    n_cand = torch.searchsorted(sorted_group, det_group, side="right") - lo
    # Most detections have no candidate (wrong class for the image): skip them early.
    active = torch.nonzero(n_cand > 0).flatten()
    if active.numel() == 0:
        return best_iou, best_idx
    lo, n_cand = lo[active], n_cand[active]
    act_boxes, gt64 = det_boxes[active].double(), gt_boxes.double()

    ends = torch.cumsum(n_cand, 0)
    total = int(ends[-1])
    n_marks = (total - 1) // max_pairs
    marks = torch.arange(1, n_marks + 1, device=device) * max_pairs
    cuts = torch.searchsorted(ends, marks, side="right").tolist()
    bounds = sorted({0, *cuts, active.numel()})
    for start, stop in itertools.pairwise(bounds):
        iou, pos = _best_in_chunk(
            act_boxes[start:stop], lo[start:stop], n_cand[start:stop], gt64, gt_order
        )
        best_iou[active[start:stop]] = iou
        best_idx[active[start:stop]] = gt_order[pos]
    return best_iou, best_idx


def _best_in_chunk(
    det_boxes: Tensor, lo: Tensor, n_cand: Tensor, gt_boxes: Tensor, gt_order: Tensor
) -> tuple[Tensor, Tensor]:
    """Best IoU and its sorted ground-truth position for detections with >= 1 candidate.

    Args:
        det_boxes: float64 [d, 4].
        lo: int64 [d] first candidate's position in ``gt_order``.
        n_cand: int64 [d] number of candidates (all > 0).
        gt_boxes: float64 [G, 4] all ground truths.
        gt_order: int64 [G] ground truths sorted by group.
    """
    n_det = det_boxes.shape[0]
    device = det_boxes.device
    n_pairs = int(n_cand.sum())
    owner = torch.repeat_interleave(torch.arange(n_det, device=device), n_cand, output_size=n_pairs)
    first_pair = torch.cumsum(n_cand, 0) - n_cand
    pos = lo[owner] + torch.arange(n_pairs, device=device) - first_pair[owner]
    iou = pair_iou(det_boxes[owner], gt_boxes[gt_order[pos]])

    best = torch.full((n_det,), -1.0, dtype=iou.dtype, device=device)
    best = best.scatter_reduce(0, owner, iou, reduce="amax")
    # Smallest sorted position among the maxima = first ground truth on equal IoU.
    sentinel = gt_order.shape[0]
    cand = torch.where(iou == best[owner], pos, torch.full_like(pos, sentinel))
    first = torch.full((n_det,), sentinel, dtype=pos.dtype, device=device)
    return best, first.scatter_reduce(0, owner, cand, reduce="amin")


def envelope_ap(rec: Tensor, prec: Tensor) -> Tensor:
    """Area under the monotone precision envelope (VOC2010+ rule, WIDER FACE's ``voc_ap``).

    Args:
        rec: float64 [N] non-decreasing recalls.
        prec: float64 [N] precisions at those recalls.

    Returns:
        float64 0-d AP. Sentinels (0, 0) and (1, 0) are added; the envelope at each point is
        the largest precision at that or any later point; steps where recall does not change
        contribute zero width.
    """
    zero = rec.new_zeros(1)
    mrec = torch.cat([zero, rec, zero + 1.0])
    mpre = torch.cat([zero, prec, zero])
    envelope = torch.flip(torch.cummax(torch.flip(mpre, (0,)), 0).values, (0,))
    return ((mrec[1:] - mrec[:-1]) * envelope[1:]).sum()
