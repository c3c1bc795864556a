"""WIDER FACE average precision (easy / medium / hard) as a torchmetrics ``Metric``.

Why hand-written: torchmetrics' ``MeanAveragePrecision`` is COCO-style only, while WIDER FACE
results are reported with the benchmark's own evaluation (the MATLAB ``eval_tools`` and its
Python port ``evaluation.py``), which differs from both COCO and PASCAL VOC:

- scores are min-max normalised over all predictions of the whole set, and the precision-recall
  curve is sampled at 1000 fixed thresholds ``1 - (t + 1) / 1000``, t = 0..999, keeping
  predictions with normalised score ``>=`` the threshold;
- in each image, predictions are visited by descending score; each takes the face with the
  largest overlap (+1 pixel convention, first face on equal overlap). With overlap ``>= 0.5``:
  if that face does not count in the setting (easy / medium / hard), the prediction is ignored
  (counts neither way); otherwise the face is recalled if it was not already. There is no
  "already taken" rule: a second prediction on a recalled face is just a proposal that adds no
  recall;
- per threshold, the kept non-ignored proposals and the recalled faces are summed over images;
  precision = recalled faces / proposals, recall = recalled faces / faces counting in the
  setting (all images, including those without predictions). Precision is taken as 0 where no
  proposal is kept (the official code divides 0 by 0 there; those points have recall 0 and
  never reach the area, so the AP is unchanged);
- images without any ground-truth box are skipped entirely: their predictions are neither true
  nor false positives (they still take part in the score normalisation). The released lists give
  an image without faces one all-zero box instead, so the official evaluation scores those
  images and their predictions are false positives; the dataset keeps that box (see
  :mod:`qmimic.data.widerface.annotations`) and this metric then does the same;
- AP is the area under the monotone precision envelope (the VOC2010 rule).

Since predictions are visited by score and a face stays recalled, the predictions kept at a
threshold are exactly those with a normalised score at or above it, and a face is recalled at a
threshold iff its best-scoring matched prediction is kept. Both curves are therefore cumulative
histograms over the threshold index at which each prediction (or face) enters, which is how
``compute`` evaluates them, without a loop over images or thresholds.

Score normalisation uses the true minimum and maximum (the MATLAB code; the Python port starts
from min=1, max=0, which differs only for scores outside [0, 1]). When every score is equal the
MATLAB variant maps them to 1; any constant gives the same AP because the curve then has one
operating point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from qmimic.metrics.matching import as_boxes, best_overlaps, check_length, envelope_ap, image_ids

__all__ = ["WiderFaceAP"]

_THRESH_NUM = 1000
SETTINGS = ("easy", "medium", "hard")


def score_thresholds(device: torch.device | None = None) -> Tensor:
    """The official thresholds ``1 - (t + 1) / 1000``, t = 0..999, float64 [1000], decreasing.

    Computed as in the official code (division, then subtraction, in float64) so that scores
    landing exactly on a threshold compare identically.
    """
    steps = torch.arange(1, _THRESH_NUM + 1, dtype=torch.float64, device=device)
    return 1.0 - steps / _THRESH_NUM


def entry_index(norm_scores: Tensor) -> Tensor:
    """Index of the first threshold at which each prediction is kept (int64; 1000 = never).

    Thresholds decrease with t, so a score is kept at every t from this index on.
    """
    ascending = torch.flip(score_thresholds(norm_scores.device), (0,))
    n_reached = torch.searchsorted(ascending, norm_scores, side="right")
    return _THRESH_NUM - n_reached


def normalise_scores(scores: Tensor) -> Tensor:
    """Min-max normalisation over all predictions (float64 [P] -> [P] in [0, 1])."""
    if scores.numel() == 0:
        return scores
    lo, hi = scores.min(), scores.max()
    if hi > lo:
        return (scores - lo) / (hi - lo)
    return torch.ones_like(scores)


def cumulative_counts(entry: Tensor) -> Tensor:
    """How many entries are ``<= t`` for t = 0..999 (int64 [1000]); entries of 1000 never count."""
    thresholds = torch.arange(_THRESH_NUM, device=entry.device)
    return torch.searchsorted(torch.sort(entry).values, thresholds, side="right")


class WiderFaceAP(Metric):
    """WIDER FACE AP for the easy, medium and hard settings (see the module docstring).

    Args:
        iou_threshold: a prediction matches a face with IoU ``>=`` this (official value 0.5).
        **kwargs: forwarded to ``torchmetrics.Metric``.

    ``update(preds, target)`` takes one dict per image:

    - ``preds[i]``: ``boxes`` float [N, 4] (x1, y1, x2, y2, pixels), ``scores`` float [N] (any
      scale; normalised over the whole set at compute time).
    - ``target[i]``: ``boxes`` float [M, 4] (all annotated faces), and bool [M] masks
      ``easy``, ``medium``, ``hard``: True where the face counts in that setting; False faces
      are ignored (predictions on them count neither way).

    ``compute()`` returns ``{"easy": 0-d, "medium": 0-d, "hard": 0-d}`` APs in [0, 1]; a
    setting with no counting face has AP 0 (the official code would give NaN).

    States are flat 1-D tensors of the metric's float dtype with per-image box counts,
    concatenated across processes; see ``qmimic.metrics.VOCMeanAP`` for why.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    _STATES = (
        "pred_boxes",
        "pred_scores",
        "pred_counts",
        "gt_boxes",
        "gt_easy",
        "gt_medium",
        "gt_hard",
        "gt_counts",
    )

    def __init__(self, iou_threshold: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
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
        n_preds: list[int] = []
        n_gts: list[int] = []
        for pred, tgt in zip(preds, target, strict=True):
            boxes = as_boxes(pred["boxes"], "preds boxes")
            n_preds.append(boxes.shape[0])
            cols["pred_boxes"].append(boxes.reshape(-1))
            cols["pred_scores"].append(check_length(pred["scores"], boxes.shape[0], "scores"))

            gt_boxes = as_boxes(tgt["boxes"], "target boxes")
            n_gts.append(gt_boxes.shape[0])
            cols["gt_boxes"].append(gt_boxes.reshape(-1))
            for setting in SETTINGS:
                if setting not in tgt:
                    raise KeyError(f"target dicts need an '{setting}' mask")
                mask = check_length(tgt[setting], gt_boxes.shape[0], f"target {setting}")
                cols[f"gt_{setting}"].append(mask)
        cols["pred_counts"].append(torch.tensor(n_preds, dtype=torch.long))
        cols["gt_counts"].append(torch.tensor(n_gts, dtype=torch.long))

        for name, parts in cols.items():
            flat = [p.detach().to(device=self.device, dtype=self.dtype) for p in parts]
            getattr(self, name).append(
                torch.cat(flat) if flat else torch.zeros(0, dtype=self.dtype, device=self.device)
            )

    def _state(self, name: str) -> Tensor:
        value = getattr(self, name)
        if isinstance(value, list) and not value:
            return torch.zeros(0, dtype=self.dtype, device=self.device)
        return dim_zero_cat(value)

    def compute(self) -> dict[str, Tensor]:
        """APs of the three settings (see the class docstring)."""
        pred_boxes = self._state("pred_boxes").reshape(-1, 4)
        scores = normalise_scores(self._state("pred_scores").double())
        pred_img = image_ids(self._state("pred_counts"))
        gt_boxes = self._state("gt_boxes").reshape(-1, 4)
        gt_img = image_ids(self._state("gt_counts"))

        # Images without faces are skipped by the official loop, predictions included.
        has_face = torch.zeros(
            self._state("gt_counts").numel(), dtype=torch.bool, device=gt_img.device
        )
        has_face[gt_img] = True
        in_play = has_face[pred_img]
        best_iou, best_gt = best_overlaps(pred_boxes, pred_img, gt_boxes, gt_img)
        matched = in_play & (best_iou >= self.iou_threshold)
        entry = entry_index(scores)

        out_dtype = torch.get_default_dtype()
        return {
            setting: self._setting_ap(
                self._state(f"gt_{setting}") != 0, best_gt, matched, in_play, entry
            ).to(out_dtype)
            for setting in SETTINGS
        }

    @staticmethod
    def _setting_ap(
        counts: Tensor, best_gt: Tensor, matched: Tensor, in_play: Tensor, entry: Tensor
    ) -> Tensor:
        """AP of one setting.

        Args:
            counts: bool [G], faces that count in the setting.
            best_gt: int64 [P] best-overlap face of each prediction (-1 if none).
            matched: bool [P], prediction in a face image with overlap >= threshold.
            in_play: bool [P], prediction in an image with at least one face.
            entry: int64 [P] first threshold index keeping the prediction.

        Returns:
            float64 0-d AP.
        """
        n_faces = int(counts.sum())
        if n_faces == 0:
            return entry.new_zeros((), dtype=torch.float64)
        hits_counting = torch.zeros_like(matched)
        hits_counting[matched] = counts[best_gt[matched]]
        proposal = in_play & ~(matched & ~hits_counting)

        # A face is recalled from the threshold at which its best-scoring match enters.
        face_entry = torch.full_like(counts, _THRESH_NUM, dtype=torch.long)
        face_entry = face_entry.scatter_reduce(
            0, best_gt[hits_counting], entry[hits_counting], reduce="amin"
        )
        proposals = cumulative_counts(entry[proposal]).double()
        recalled = cumulative_counts(face_entry[counts]).double()
        precision = torch.where(proposals > 0, recalled / proposals.clamp(min=1.0), 0.0)
        return envelope_ap(recalled / n_faces, precision)
