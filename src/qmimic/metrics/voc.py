"""PASCAL VOC mean average precision as a torchmetrics ``Metric``.

Why hand-written: torchmetrics' ``MeanAveragePrecision`` implements the COCO protocol only
(IoU 0.50:0.95, 101-point interpolation, crowd regions, area ranges). The numbers reported for
VOC-style detectors, including the Quantization Mimic paper, come from the PASCAL devkit
(``voc_eval.py`` of py-faster-rcnn, itself a port of the VOC07 MATLAB devkit), which differs in
every detail that matters: ``difficult`` objects, one IoU threshold with a strict ``>``, the +1
pixel convention for widths and areas, and 11-point or envelope-area interpolation. This module
reproduces that protocol, vectorised so that a VOC07-test-sized evaluation takes about a second
on a CPU.

Matching (per class, the devkit's greedy procedure): detections of the class over all images are
visited by descending score; each takes the ground truth of the same class and image with the
largest overlap (first one on equal overlap, difficult ones included). It is a true positive when
that overlap is strictly above the threshold and the ground truth is neither difficult nor taken
by an earlier detection; it is ignored (neither true nor false positive) when that ground truth is
difficult; otherwise it is a false positive.

Because a detection's best ground truth does not depend on what earlier detections took, the
greedy loop has a closed form: a detection is a true positive iff its (image, best ground truth)
pair is eligible and it comes first, in score order, among the detections sharing that pair.
That is what ``VOCMeanAP.compute`` evaluates, with no Python loop over images.

Score ties are broken by a stable sort: detections with equal scores keep the order in which they
were given (``update`` call, then image within the call, then position within the image). The
devkit's ``np.argsort(-confidence)`` leaves that order unspecified.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

__all__ = ["VOCMeanAP"]

# Pairs (detection, candidate ground truth) whose IoU is evaluated at once; bounds peak memory
# to a few hundred MB whatever the number of boxes per image.
_MAX_PAIRS = 1 << 22

# Labels are stored in the metric's float dtype (see VOCMeanAP); float32 holds integers exactly
# up to 2**24.
_MAX_LABEL = 1 << 24

# Recall levels of the VOC07 11-point rule, as voc_eval.py builds them with
# np.arange(0.0, 1.1, 0.1): k * 0.1 in float64, so that 0.3 is 0.30000000000000004 and a recall
# of exactly 0.3 does not reach it. Kept bit-identical to reproduce published numbers.
_VOC07_STEPS = 11


# --------------------------------------------------------------------------------------------
# Shared helpers (also used by qmimic.metrics.widerface)
# --------------------------------------------------------------------------------------------


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
    iw = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0]) + 1.0).clamp(min=0.0)
    ih = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1]) + 1.0).clamp(min=0.0)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0] + 1.0) * (a[:, 3] - a[:, 1] + 1.0)
    area_b = (b[:, 2] - b[:, 0] + 1.0) * (b[:, 3] - b[:, 1] + 1.0)
    union = area_a + area_b - inter
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
    ends = torch.cumsum(n_cand, 0)
    total = int(ends[-1])
    if total == 0:
        return best_iou, best_idx

    det64, gt64 = det_boxes.double(), gt_boxes.double()
    marks = torch.arange(max_pairs, total, max_pairs, device=device)
    cuts = torch.searchsorted(ends, marks, side="right").tolist()
    bounds = sorted({0, *cuts, n_det})
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        iou, idx = _best_in_chunk(
            det64[start:stop], lo[start:stop], n_cand[start:stop], gt64, gt_order
        )
        best_iou[start:stop] = iou
        best_idx[start:stop] = idx
    return best_iou, best_idx


def _best_in_chunk(
    det_boxes: Tensor, lo: Tensor, n_cand: Tensor, gt_boxes: Tensor, gt_order: Tensor
) -> tuple[Tensor, Tensor]:
    """``best_overlaps`` for one chunk of detections (float64 boxes)."""
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
    first = first.scatter_reduce(0, owner, cand, reduce="amin")
    has = n_cand > 0
    idx = torch.where(has, gt_order[first.clamp(max=sentinel - 1)], torch.full_like(first, -1))
    return torch.where(has, best, torch.full_like(best, -1.0)), idx


def count_values(values: Tensor, n: int) -> Tensor:
    """Histogram of non-negative int64 ``values`` over ``0..n-1`` (int64 [n]).

    Sort-based rather than ``torch.bincount``, which refuses to run on CUDA under
    ``torch.use_deterministic_algorithms(True)`` (as set by Lightning's ``deterministic=True``).
    """
    edges = torch.arange(n + 1, device=values.device)
    cum = torch.searchsorted(torch.sort(values).values, edges, side="left")
    return cum[1:] - cum[:-1]


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


def voc07_ap(rec: Tensor, prec: Tensor) -> Tensor:
    """VOC07 11-point AP: mean over t in {0, 0.1, ..., 1} of max precision at recall >= t.

    Args:
        rec: float64 [N] non-decreasing recalls.
        prec: float64 [N] precisions.

    Returns:
        float64 0-d AP; a recall level no point reaches contributes 0.
    """
    levels = torch.arange(_VOC07_STEPS, dtype=torch.float64, device=rec.device) * 0.1
    if rec.numel() == 0:
        return levels.new_zeros(())
    # Points with rec >= t form a suffix because rec is sorted, so the max precision over them
    # is the reverse running max at the suffix's first index.
    suffix_max = torch.flip(torch.cummax(torch.flip(prec, (0,)), 0).values, (0,))
    first = torch.searchsorted(rec, levels, side="left")
    reached = first < rec.numel()
    p = torch.where(reached, suffix_max[first.clamp(max=rec.numel() - 1)], levels.new_zeros(()))
    return p.sum() / _VOC07_STEPS


def image_ids(counts: Tensor) -> Tensor:
    """Image index of every box, from per-image box counts (int64 [n_images] -> [sum])."""
    counts = counts.long()
    return torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)


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


# --------------------------------------------------------------------------------------------
# Metric
# --------------------------------------------------------------------------------------------


class VOCMeanAP(Metric):
    """PASCAL VOC mean average precision (devkit semantics; see the module docstring).

    Args:
        use_07_metric: VOC07 11-point interpolation when True, otherwise the VOC2010+ area under
            the monotone precision envelope.
        iou_threshold: a match needs IoU strictly greater than this.
        **kwargs: forwarded to ``torchmetrics.Metric`` (e.g. ``dist_sync_on_step``).

    ``update(preds, target)`` takes one dict per image:

    - ``preds[i]``: ``boxes`` float [N, 4] (x1, y1, x2, y2 in pixels), ``scores`` float [N],
      ``labels`` int [N].
    - ``target[i]``: ``boxes`` float [M, 4], ``labels`` int [M], optional ``difficult``
      bool [M] (default all False).

    ``compute()`` returns ``{"map": 0-d, "classes": int64 [C], "ap_per_class": float [C]}``
    where ``classes`` are the sorted labels having at least one non-difficult ground truth and
    ``map`` is the mean of ``ap_per_class`` (0 when there is no such class). A class with ground
    truth but no detection has AP 0; classes with only difficult objects or only detections are
    left out. As for any torchmetrics output, one-element tensors come back squeezed to 0-d.

    States are flat 1-D tensors of the metric's float dtype, concatenated across processes
    (``dist_reduce_fx="cat"``); per-image box counts travel with them so that the image of each
    box is recovered after gathering. One dtype and one dimensionality for every state keep the
    gather valid even for a process that saw no data (torchmetrics substitutes an empty tensor
    of the metric's dtype). Labels must therefore lie in ``(-2**24, 2**24)``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    _STATES = (
        "det_boxes",
        "det_scores",
        "det_labels",
        "det_counts",
        "gt_boxes",
        "gt_labels",
        "gt_difficult",
        "gt_counts",
    )

    def __init__(self, use_07_metric: bool = True, iou_threshold: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= iou_threshold < 1.0:
            raise ValueError(f"iou_threshold must be in [0, 1), got {iou_threshold}")
        self.use_07_metric = use_07_metric
        self.iou_threshold = iou_threshold
        for name in self._STATES:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self, preds: Sequence[Mapping[str, Tensor]], target: Sequence[Mapping[str, Tensor]]
    ) -> None:
        """Add one batch of images (see the class docstring for the dict contracts)."""
        if len(preds) != len(target):
            raise ValueError(f"got {len(preds)} predictions for {len(target)} targets")
        cols: dict[str, list[Tensor]] = {name: [] for name in self._STATES}
        n_dets: list[int] = []
        n_gts: list[int] = []
        for pred, tgt in zip(preds, target, strict=True):
            boxes = as_boxes(pred["boxes"], "preds boxes")
            n = boxes.shape[0]
            cols["det_boxes"].append(boxes.reshape(-1))
            cols["det_scores"].append(check_length(pred["scores"], n, "preds scores"))
            cols["det_labels"].append(check_length(pred["labels"], n, "preds labels"))
            n_dets.append(n)

            gt_boxes = as_boxes(tgt["boxes"], "target boxes")
            m = gt_boxes.shape[0]
            difficult = tgt.get("difficult")
            if difficult is None:
                difficult = torch.zeros(m, dtype=torch.bool)
            cols["gt_boxes"].append(gt_boxes.reshape(-1))
            cols["gt_labels"].append(check_length(tgt["labels"], m, "target labels"))
            cols["gt_difficult"].append(check_length(difficult, m, "target difficult"))
            n_gts.append(m)
        cols["det_counts"].append(torch.tensor(n_dets, dtype=torch.long))
        cols["gt_counts"].append(torch.tensor(n_gts, dtype=torch.long))

        for name, parts in cols.items():
            # One tensor per call, even for an empty batch, keeps the lists short for the gather.
            values = self._to_state(parts)
            if name.endswith("labels") and values.numel() and values.abs().max() >= _MAX_LABEL:
                raise ValueError(f"labels must lie in (-2**24, 2**24) (state {name})")
            getattr(self, name).append(values)

    def _to_state(self, parts: list[Tensor]) -> Tensor:
        """Concatenate per-image pieces into one flat tensor of the state dtype and device."""
        flat = [p.detach().to(device=self.device, dtype=self.dtype) for p in parts]
        if not flat:
            return torch.zeros(0, dtype=self.dtype, device=self.device)
        return torch.cat(flat)

    def _state(self, name: str) -> Tensor:
        value = getattr(self, name)
        if isinstance(value, list) and not value:
            return torch.zeros(0, dtype=self.dtype, device=self.device)
        return dim_zero_cat(value)

    def compute(self) -> dict[str, Tensor]:
        """Per-class AP and their mean (see the class docstring)."""
        det_boxes = self._state("det_boxes").reshape(-1, 4)
        det_scores = self._state("det_scores")
        det_labels = self._state("det_labels").long()
        det_img = image_ids(self._state("det_counts"))
        gt_boxes = self._state("gt_boxes").reshape(-1, 4)
        gt_labels = self._state("gt_labels").long()
        gt_difficult = self._state("gt_difficult") != 0
        gt_img = image_ids(self._state("gt_counts"))

        labels, inverse = torch.unique(torch.cat([gt_labels, det_labels]), return_inverse=True)
        n_cls = labels.numel()
        gt_cls, det_cls = inverse[: gt_labels.numel()], inverse[gt_labels.numel() :]

        # Group = (image, class): a detection is only compared with its own class and image.
        best_iou, best_gt = best_overlaps(
            det_boxes, det_img * n_cls + det_cls, gt_boxes, gt_img * n_cls + gt_cls
        )
        order = _class_then_score_order(det_cls, det_scores)
        tp, fp = _tp_fp(best_iou[order], best_gt[order], gt_difficult, self.iou_threshold)

        npos = count_values(gt_cls[~gt_difficult], n_cls)
        per_cls = count_values(det_cls, n_cls)
        first = (torch.cumsum(per_cls, 0) - per_cls).tolist()
        aps = []
        kept = torch.nonzero(npos > 0).flatten().tolist()
        npos_list, per_cls_list = npos.tolist(), per_cls.tolist()
        for k in kept:
            seg = slice(first[k], first[k] + per_cls_list[k])
            aps.append(self._class_ap(tp[seg], fp[seg], npos_list[k]))

        device = det_scores.device
        ap = torch.stack(aps) if aps else torch.zeros(0, dtype=torch.float64, device=device)
        out_dtype = torch.get_default_dtype()
        return {
            "map": ap.mean().to(out_dtype) if aps else torch.zeros((), dtype=out_dtype, device=device),
            "classes": labels[kept].long(),
            "ap_per_class": ap.to(out_dtype),
        }

    def _class_ap(self, tp: Tensor, fp: Tensor, npos: int) -> Tensor:
        """AP of one class from its score-ordered TP/FP flags (bool [N]) and positive count."""
        tp_cum = torch.cumsum(tp.long(), 0).double()
        fp_cum = torch.cumsum(fp.long(), 0).double()
        rec = tp_cum / float(npos)
        eps = torch.finfo(torch.float64).eps
        prec = tp_cum / torch.clamp(tp_cum + fp_cum, min=eps)
        return voc07_ap(rec, prec) if self.use_07_metric else envelope_ap(rec, prec)


def _class_then_score_order(det_cls: Tensor, scores: Tensor) -> Tensor:
    """Permutation grouping detections by class, each group by descending score.

    Both sorts are stable: equal scores keep their accumulation order.
    """
    by_score = torch.argsort(scores, descending=True, stable=True)
    by_class = torch.argsort(det_cls[by_score], stable=True)
    return by_score[by_class]


def _tp_fp(
    best_iou: Tensor, best_gt: Tensor, gt_difficult: Tensor, iou_threshold: float
) -> tuple[Tensor, Tensor]:
    """True/false-positive flags (bool [D] each) of detections already in score order.

    A detection matched to a difficult ground truth is neither. Among detections whose best
    match is the same eligible ground truth, only the first in order is a true positive; the
    devkit's ``det`` flags reach the same result one detection at a time.
    """
    matched = best_iou > iou_threshold
    difficult = torch.zeros_like(matched)
    difficult[matched] = gt_difficult[best_gt[matched]]
    candidate = matched & ~difficult

    n = best_gt.numel()
    position = torch.arange(n, device=best_gt.device)
    sentinel = gt_difficult.numel()  # one slot for the non-candidates
    key = torch.where(candidate, best_gt, torch.full_like(best_gt, sentinel))
    first = torch.full((sentinel + 1,), n, dtype=torch.long, device=best_gt.device)
    first = first.scatter_reduce(0, key, position, reduce="amin")
    tp = candidate & (first[key] == position)
    fp = ~matched | (candidate & ~tp)
    return tp, fp
