"""How closely one model's detections match a reference's: the check an export must pass."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from qmimic.deploy.runtime import OnnxDetector
from qmimic.errors import UserError
from qmimic.models.detector import TwoStageDetector

SCORE_ATOL = 1e-4
BOX_RTOL = 1e-3


@dataclass
class Agreement:
    """How well a model's top detections match a reference's, over some images.

    ``compared`` top detections were looked up (those of the reference in the other model and
    the other way round); ``unmatched`` found no detection of the same label within the
    tolerances; the maxima are over the closest same-label detection of each one compared.
    """

    images: int = 0
    compared: int = 0
    unmatched: int = 0
    max_score_diff: float = 0.0
    max_box_diff: float = 0.0

    @property
    def passed(self) -> bool:
        return self.unmatched == 0

    def add(self, other: Agreement) -> Agreement:
        return Agreement(
            self.images + other.images,
            self.compared + other.compared,
            self.unmatched + other.unmatched,
            max(self.max_score_diff, other.max_score_diff),
            max(self.max_box_diff, other.max_box_diff),
        )

    def summary(self) -> str:
        return (
            f"{self.images} images, {self.compared} top detections compared, "
            f"{self.unmatched} unmatched, max |score diff| {self.max_score_diff:.2e}, "
            f"max box diff {self.max_box_diff:.2e} (relative)"
        )


class ExportMismatchError(UserError):
    """The exported model does not reproduce the PyTorch detector; nothing was written."""


def _lookup(
    detections: dict[str, Tensor],
    others: dict[str, Tensor],
    top_k: int,
    score_atol: float,
    box_rtol: float,
) -> Agreement:
    """Look each of the ``top_k`` best ``detections`` up among all of ``others``."""
    result = Agreement(compared=min(top_k, len(detections["scores"])))
    for index in range(result.compared):
        box, score = detections["boxes"][index], detections["scores"][index]
        same = others["labels"] == detections["labels"][index]
        if not same.any():
            result.unmatched += 1
            continue
        # relative to the coordinate, with 1 pixel as the floor for coordinates near 0
        box_diff = ((others["boxes"][same] - box).abs() / box.abs().clamp(min=1)).amax(dim=1)
        score_diff = (others["scores"][same] - score).abs()
        closest = torch.argmin(torch.maximum(box_diff / box_rtol, score_diff / score_atol))
        result.max_score_diff = max(result.max_score_diff, float(score_diff[closest]))
        result.max_box_diff = max(result.max_box_diff, float(box_diff[closest]))
        if score_diff[closest] > score_atol or box_diff[closest] > box_rtol:
            result.unmatched += 1
    return result


def compare_detections(
    reference: dict[str, Tensor],
    candidate: dict[str, Tensor],
    top_k: int = 10,
    score_atol: float = SCORE_ATOL,
    box_rtol: float = BOX_RTOL,
) -> Agreement:
    """Compare two models' detections of one image (``boxes`` [D, 4], ``scores`` [D] sorted
    decreasingly, ``labels`` [D]), both ways: each top-``k`` detection of one must have a
    detection of the same label in the other, with ``|score diff| <= score_atol`` and every box
    coordinate within ``box_rtol`` relative. Matching by value rather than by rank keeps two
    detections whose scores differ by less than the tolerance from failing by swapping places.
    """
    forward = _lookup(reference, candidate, top_k, score_atol, box_rtol)
    backward = _lookup(candidate, reference, top_k, score_atol, box_rtol)
    return forward.add(backward).add(Agreement(images=1))


def check_against(
    reference: TwoStageDetector | OnnxDetector,
    model: OnnxDetector,
    images: Iterable[Tensor],
    top_k: int = 10,
    score_atol: float = SCORE_ATOL,
    box_rtol: float = BOX_RTOL,
) -> Agreement:
    """:func:`compare_detections` of ``model`` against ``reference`` over ``images``."""
    total = Agreement()
    for image in images:
        if isinstance(reference, OnnxDetector):
            expected = reference.predict(image)
        else:
            with torch.no_grad():
                expected = reference.eval().predict([image])[0]
        found = model.predict(image)
        total = total.add(compare_detections(expected, found, top_k, score_atol, box_rtol))
    return total
