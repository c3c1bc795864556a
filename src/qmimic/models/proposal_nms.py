"""Exact greedy NMS that stops once the proposal budget is kept.

The RPN keeps the ``post_nms_top_n`` best boxes that survive greedy NMS among its
``pre_nms_top_n`` highest-scoring proposals (the paper's test budget: 300 of 6,000). Running NMS
over all 6,000 costs most of a tiny student's inference, although the boxes kept first are
decided by a short prefix of them. Written by hand because torchvision's ``nms`` has no early
stop; the NMS itself is still torchvision's.

Why a prefix suffices. Greedy NMS visits boxes by decreasing score, ties in index order
(torchvision sorts with a stable sort), and keeps a box iff it overlaps no box kept before it
by more than the threshold. By induction over the visiting order, the decision on a box depends
only on the boxes visited before it. When the scores are already non-increasing in index order,
the visiting order is the index order, so NMS over the first ``m`` boxes keeps exactly the boxes
that NMS over all of them keeps among those ``m``, in the same order. Hence, as soon as a prefix
keeps at least ``top_n`` boxes, its first ``top_n`` are the first ``top_n`` of the full run;
otherwise the prefix doubles, up to all boxes (then it is the full run).

The loop's length depends on the data, so a traced graph (ONNX export) would fix it to the
example's; under tracing the function is one plain NMS, whose result is the same.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import nms


def top_nms(boxes: Tensor, scores: Tensor, iou_threshold: float, top_n: int) -> Tensor:
    """``nms(boxes, scores, iou_threshold)[:top_n]``, looking only at as many of the boxes as
    that needs.

    Args:
        boxes: float ``[N, 4]`` xyxy.
        scores: float ``[N]``; processed by prefixes when non-increasing (as ``topk`` returns
            them), else by one plain ``nms``.
        iou_threshold: boxes overlapping a kept box by more than this IoU are dropped.
        top_n: how many kept boxes are wanted.

    Returns:
        int64 ``[min(top_n, K)]`` indices into ``boxes`` (``K`` boxes survive NMS in all), by
        decreasing score, ties in index order.
    """
    if torch.jit.is_tracing():  # an exported graph must hold for every input: one plain NMS
        return nms(boxes, scores, iou_threshold)[:top_n]
    count = len(scores)
    if top_n <= 0 or count == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    if not bool((scores[1:] <= scores[:-1]).all()):
        return nms(boxes, scores, iou_threshold)[:top_n]
    prefix = min(count, 2 * top_n)
    while True:
        keep = nms(boxes[:prefix], scores[:prefix], iou_threshold)
        if len(keep) >= top_n or prefix == count:
            return keep[:top_n]
        prefix = min(count, 2 * prefix)
