"""PASCAL VOC mean average precision as a torchmetrics ``Metric``.

Why hand-written: torchmetrics' ``MeanAveragePrecision`` implements the COCO protocol only
(IoU 0.50:0.95, 101-point interpolation, crowd regions, area ranges). The numbers reported for
VOC-style detectors, including the Quantization Mimic paper, come from the PASCAL devkit
(``voc_eval.py`` of py-faster-rcnn, itself a port of the VOC07 MATLAB devkit), which differs in
every detail that matters: ``difficult`` objects, one IoU threshold with a strict ``>``, the +1
pixel convention for widths and areas, and 11-point or envelope-area interpolation. This module
reproduces that protocol, vectorised: a VOC07-test-sized evaluation (4952 images, 100
detections each) takes well under a second of CPU time, update included.

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

import functools
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from qmimic.metrics.matching import (
    as_boxes,
    best_overlaps,
    check_length,
    envelope_ap,
    image_ids,
)

__all__ = ["VOCMeanAP"]

# Labels are stored in the metric's float dtype (see VOCMeanAP); float32 holds integers exactly
# up to 2**24.
_MAX_LABEL = 1 << 24

# Label ranges up to this size map to class indices by an offset instead of torch.unique.
_DENSE_LABEL_SPAN = 1 << 16

# Recall levels of the VOC07 11-point rule, as voc_eval.py builds them with
# np.arange(0.0, 1.1, 0.1): k * 0.1 in float64, so that 0.3 is 0.30000000000000004 and a recall
# of exactly 0.3 does not reach it. Kept bit-identical to reproduce published numbers.
_VOC07_STEPS = 11


def count_values(values: Tensor, n: int) -> Tensor:
    """Histogram of non-negative int64 ``values`` over ``0..n-1`` (int64 [n]).

    Sort-based rather than ``torch.bincount``, which refuses to run on CUDA under
    ``torch.use_deterministic_algorithms(True)`` (as set by Lightning's ``deterministic=True``).
    """
    edges = torch.arange(n + 1, device=values.device)
    cum = torch.searchsorted(torch.sort(values).values, edges, side="left")
    return cum[1:] - cum[:-1]


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
    left out. ``classes`` and ``ap_per_class`` stay 1-D even with a single class (torchmetrics
    would otherwise squeeze one-element outputs to 0-d).

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

    def _wrap_compute(self, compute: Callable) -> Callable:
        """torchmetrics' wrapper (sync, caching) plus undoing its squeeze of per-class outputs."""
        wrapped = super()._wrap_compute(compute)

        @functools.wraps(compute)
        def keep_per_class_1d(*args, **kwargs) -> dict[str, Tensor]:
            out = wrapped(*args, **kwargs)
            per_class = ("classes", "ap_per_class")
            return {k: v.reshape(-1) if k in per_class else v for k, v in out.items()}

        return keep_per_class_1d

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

        labels, gt_cls, det_cls = _dense_classes(gt_labels, det_labels)
        n_cls = labels.numel()

        # Group = (image, class): a detection is only compared with its own class and image.
        best_iou, best_gt = best_overlaps(
            det_boxes, det_img * n_cls + det_cls, gt_boxes, gt_img * n_cls + gt_cls
        )
        order, sorted_cls = _class_then_score_order(det_cls, det_scores)
        tp, fp = _tp_fp(best_iou[order], best_gt[order], gt_difficult, self.iou_threshold)

        npos = count_values(gt_cls[~gt_difficult], n_cls)
        bounds = torch.searchsorted(sorted_cls, torch.arange(n_cls + 1, device=sorted_cls.device))
        bounds, npos_list = bounds.tolist(), npos.tolist()
        kept = [k for k in range(n_cls) if npos_list[k] > 0]
        aps = []
        for k in kept:
            seg = slice(bounds[k], bounds[k + 1])
            aps.append(self._class_ap(tp[seg], fp[seg], npos_list[k]))

        device = det_scores.device
        ap = torch.stack(aps) if aps else torch.zeros(0, dtype=torch.float64, device=device)
        out_dtype = torch.get_default_dtype()
        mean_ap = ap.mean() if aps else ap.new_zeros(())
        return {
            "map": mean_ap.to(out_dtype),
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


def _dense_classes(gt_labels: Tensor, det_labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Map labels to dense class indices.

    Returns:
        ``(values, gt_cls, det_cls)``: int64 [K] label of each class index, and the class index
        of every ground truth and detection. Small label ranges (the usual case) are offset
        rather than passed through ``torch.unique``, which costs a sort of every detection.
    """
    both = torch.cat([gt_labels, det_labels])
    if both.numel() == 0:
        return both, gt_labels, det_labels
    lo, hi = int(both.min()), int(both.max())
    if hi - lo < _DENSE_LABEL_SPAN:
        values = torch.arange(lo, hi + 1, device=both.device)
        return values, gt_labels - lo, det_labels - lo
    values, inverse = torch.unique(both, return_inverse=True)
    return values, inverse[: gt_labels.numel()], inverse[gt_labels.numel() :]


def _class_then_score_order(det_cls: Tensor, scores: Tensor) -> tuple[Tensor, Tensor]:
    """Permutation grouping detections by class, each group by descending score.

    Both sorts are stable: equal scores keep their accumulation order.

    Returns:
        ``(order, sorted_cls)``: int64 [D] permutation and the (ascending) class of each
        detection in that order.
    """
    by_score = torch.argsort(scores, descending=True, stable=True)
    cls_by_score = det_cls[by_score]
    by_class = torch.argsort(cls_by_score, stable=True)
    return by_score[by_class], cls_by_score[by_class]


def _tp_fp(
    best_iou: Tensor, best_gt: Tensor, gt_difficult: Tensor, iou_threshold: float
) -> tuple[Tensor, Tensor]:
    """True/false-positive flags (bool [D] each) of detections already in score order.

    A detection matched to a difficult ground truth is neither. Among detections whose best
    match is the same eligible ground truth, only the first in order is a true positive; the
    devkit's ``det`` flags reach the same result one detection at a time. Only the (few)
    matched detections are handled individually; all others are false positives.
    """
    n = best_gt.numel()
    hit = torch.nonzero(best_iou > iou_threshold).flatten()  # ascending, i.e. in score order
    hit_gt = best_gt[hit]
    difficult = gt_difficult[hit_gt]
    cand, cand_gt = hit[~difficult], hit_gt[~difficult]
    first = torch.full((gt_difficult.numel(),), n, dtype=torch.long, device=best_gt.device)
    first = first.scatter_reduce(0, cand_gt, cand, reduce="amin")
    taking = cand[first[cand_gt] == cand]

    tp = torch.zeros(n, dtype=torch.bool, device=best_gt.device)
    tp[taking] = True
    fp = torch.ones(n, dtype=torch.bool, device=best_gt.device)
    fp[hit[difficult]] = False
    fp[taking] = False
    return tp, fp
