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
example's. Under tracing the function is instead one ONNX ``NonMaxSuppression`` with
``max_output_boxes_per_class = top_n``: onnxruntime visits boxes by score and stops once that
many are kept, which by the same argument gives the same boxes.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms, nms


class _TopNMSInGraph(torch.autograd.Function):
    """``nms(boxes, scores, iou_threshold)[:top_n]``, exported as one ``NonMaxSuppression``
    bounded by ``top_n`` (torchvision's own NMS symbolic leaves the bound unlimited)."""

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, iou_threshold: float, top_n: int) -> Tensor:
        return nms(boxes, scores, iou_threshold)[:top_n]

    @staticmethod
    def symbolic(g, boxes, scores, iou_threshold: float, top_n: int):
        def constant(value, dtype):
            return g.op("Constant", value_t=torch.tensor(value, dtype=dtype))

        # ONNX wants boxes [batch, N, 4] and scores [batch, classes, N]; IoU does not care
        # whether the corners come as xyxy or yxyx
        batch_boxes = g.op("Unsqueeze", boxes, constant([0], torch.int64))
        batch_scores = g.op("Unsqueeze", scores, constant([0, 1], torch.int64))
        selected = g.op(  # [M, 3]: (batch, class, box index), by decreasing score
            "NonMaxSuppression",
            batch_boxes,
            batch_scores,
            constant([top_n], torch.int64),
            constant([iou_threshold], torch.float32),
        )
        return g.op("Gather", selected, constant(2, torch.int64), axis_i=1)


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
    if torch.jit.is_tracing():  # an exported graph must hold for every input: one bounded NMS
        return _TopNMSInGraph.apply(boxes, scores, iou_threshold, top_n)
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


def top_class_nms(
    boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float, top_n: int
) -> Tensor:
    """``batched_nms(boxes, scores, labels, iou_threshold)[:top_n]``: NMS within each class, the
    ``top_n`` best survivors over all classes, looking only at as many boxes as that needs.

    Eager: the boxes by decreasing score (stable), then torchvision's ``batched_nms`` over a
    prefix of ``2 * top_n`` of them, doubled until ``top_n`` survive or every box is in. The
    prefix argument above holds class by class: whether a box survives depends only on the
    higher-scoring boxes of its class, which are all in any prefix that holds it. The region
    head's ``R x (K - 1)`` class boxes (6,000 at the paper's 300 proposals and 20 classes) thus
    cost an NMS over a few hundred. Traced: the classes are moved apart (every box shifted by
    ``label * (largest coordinate + 1)``, so boxes of different classes never overlap, as
    torchvision's traced ``batched_nms`` does it) and one ``NonMaxSuppression`` bounded by
    ``top_n`` runs over all of them, which by the same argument keeps the same boxes.

    Args: ``boxes`` ``[N, 4]`` xyxy, ``scores`` ``[N]``, ``labels`` int64 ``[N]``.
    Returns: int64 indices ``[min(top_n, K)]`` by decreasing score (the order among equal
    scores, and so the choice among them at the cut, is unspecified, as torchvision's is).
    """
    if torch.jit.is_tracing():
        # the zero keeps the maximum defined for an image without boxes
        largest = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
        shifted = boxes + (labels.to(boxes) * (largest + 1))[:, None]
        return _TopNMSInGraph.apply(shifted, scores, iou_threshold, top_n)
    count = len(scores)
    if top_n <= 0 or count == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    prefix = min(count, 2 * top_n)
    while True:
        head = order[:prefix]
        keep = batched_nms(boxes[head], scores[head], labels[head], iou_threshold)
        if len(keep) >= top_n or prefix == count:
            return head[keep[:top_n]]
        prefix = min(count, 2 * prefix)
