"""Tests of qmimic.metrics.WiderFaceAP against hand-computed cases and a loop-based port.

Conventions used in the hand computations: boxes use the +1 pixel convention; thresholds are
thr_t = 1 - (t + 1) / 1000 for t = 0..999, and a prediction with normalised score s is kept
from the first t with thr_t <= s on: s = 1 -> t = 0, s = 0.75 -> t = 249, s = 0.5 -> t = 499,
s = 0 -> t = 999. "props" are kept non-ignored predictions, "rec" recalled faces; precision is
rec / props and recall is rec / (faces counting in the setting).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.utilities import dim_zero_cat

from qmimic.metrics import WiderFaceAP
from qmimic.metrics.widerface import entry_index, score_thresholds
from wider_reference import reference_wider

A = [0, 0, 9, 9]
B = [20, 0, 29, 9]
C = [40, 0, 49, 9]
FAR = [200, 200, 209, 209]
SETTINGS = ("easy", "medium", "hard")


def boxes(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(np.array(rows, dtype=np.float32)).reshape(-1, 4)


def pred(rows: list[list[float]], scores: list[float]) -> dict:
    return {"boxes": boxes(*rows), "scores": torch.tensor(scores, dtype=torch.float32)}


def faces(rows: list[list[float]], easy=None, medium=None, hard=None) -> dict:
    n = len(rows)
    out = {"boxes": boxes(*rows)}
    for name, mask in zip(SETTINGS, (easy, medium, hard), strict=True):
        out[name] = torch.tensor([True] * n if mask is None else mask, dtype=torch.bool)
    return out


def run(preds: list[dict], target: list[dict]) -> dict[str, float]:
    metric = WiderFaceAP()
    metric.update(preds, target)
    return {k: float(v) for k, v in metric.compute().items()}


# ------------------------------------------------------------------------------------------
# Hand-made cases
# ------------------------------------------------------------------------------------------


def test_threshold_entry_points() -> None:
    thr = score_thresholds()
    assert thr[0] == 0.999 and thr[499] == 0.5 and thr[999] == 0.0
    scores = torch.tensor([1.0, 0.75, 0.5, 0.0, 0.9995, 0.4995], dtype=torch.float64)
    assert entry_index(scores).tolist() == [0, 249, 499, 999, 0, 500]


def test_basic_curve() -> None:
    # Faces A, B. Preds: A 0.9 -> 1.0 (t=0), FAR 0.5 -> 0.5 (t=499), B 0.1 -> 0.0 (t=999).
    # t 0..498: props 1, rec 1 -> P 1, R .5;  t 499..998: props 2, rec 1 -> P .5, R .5;
    # t 999: props 3, rec 2 -> P 2/3, R 1.  Envelope: .5 * 1 + .5 * 2/3 = 5/6.
    result = run([pred([A, FAR, B], [0.9, 0.5, 0.1])], [faces([A, B])])
    assert result == pytest.approx(dict.fromkeys(SETTINGS, 5 / 6), abs=1e-7)


def test_ignored_faces_make_predictions_count_neither_way() -> None:
    # Faces A, B. Preds (already normalised): B 1.0 (t=0), FAR .75 (t=249), A .5 (t=499),
    # FAR 0.0 (t=999).
    # easy (A counts, B ignored; 1 face): the pred on B is ignored.
    #   t 0..248: props 0 (P := 0, R 0); t 249..498: props 1, rec 0; t 499..998: props 2, rec 1
    #   -> P .5, R 1; t 999: props 3 -> P 1/3.  AP = 1 * .5 = 0.5
    #   (counting the pred on B as a FP would give 1/3; counting B as a face, at most .5 * .5).
    # medium (B counts, A ignored): t 0..248: props 1, rec 1 -> P 1, R 1.  AP = 1.
    # hard (both count, 2 faces): t 0..248: P 1, R .5; t 249..498: P .5, R .5;
    #   t 499..998: props 3, rec 2 -> P 2/3, R 1; t 999: P .5.  AP = .5 * 1 + .5 * 2/3 = 5/6.
    result = run(
        [pred([B, FAR, A, C], [1.0, 0.75, 0.5, 0.0])],
        [faces([A, B], easy=[True, False], medium=[False, True], hard=[True, True])],
    )
    assert result == pytest.approx({"easy": 0.5, "medium": 1.0, "hard": 5 / 6}, abs=1e-7)


def test_second_prediction_on_a_recalled_face_is_a_plain_proposal() -> None:
    # Faces A, B. Preds: A 1.0 (t=0), A again .5 (t=499), B 0.0 (t=999).
    # t 0..498: P 1, R .5; t 499..998: props 2, rec 1 -> P .5, R .5; t 999: props 3, rec 2
    # -> P 2/3, R 1.  AP = .5 + .5 * 2/3 = 5/6 (1.0 if the duplicate were ignored).
    result = run([pred([A, A, B], [1.0, 0.5, 0.0])], [faces([A, B])])
    assert result["hard"] == pytest.approx(5 / 6, abs=1e-7)


def test_overlap_exactly_half_is_a_match() -> None:
    # [0,0,19,9] vs A: IoU 100/200 = 0.5 >= 0.5 -> recalls A at t=0 with precision 1: AP 1.
    # The FAR pred (score 0 -> t=999) only lowers precision after full recall.
    result = run([pred([[0, 0, 19, 9], FAR], [1.0, 0.0])], [faces([A])])
    assert result["easy"] == pytest.approx(1.0)
    # IoU 100/210 < 0.5 -> no recall at all.
    result = run([pred([[0, 0, 20, 9], FAR], [1.0, 0.0])], [faces([A])])
    assert result["easy"] == 0.0


def test_scores_are_min_max_normalised_over_the_whole_set() -> None:
    # Any affine rescaling gives the same result, including scores far outside [0, 1].
    target = [faces([A, B]), faces([C])]
    ref = run([pred([A, FAR], [0.9, 0.4]), pred([C, B], [0.6, 0.1])], target)
    scaled = run([pred([A, FAR], [39.0, 34.0]), pred([C, B], [36.0, 31.0])], target)
    assert scaled == pytest.approx(ref, abs=1e-7)


def test_faceless_images_are_skipped_but_take_part_in_normalisation() -> None:
    # Faces A, B in image 0; preds A 1002, B 1001.5, FAR 1001 -> 1, .5, 0 with the true min:
    #   t 0..498: P 1, R .5; t 499..998: P 1, R 1; t 999: P 2/3.  AP = 1.
    # (A min initialised at 1 would give .999, .9995, 1: all kept from t=0, AP 2/3.)
    with_face = pred([A, B, FAR], [1002.0, 1001.5, 1001.0])
    assert run([with_face], [faces([A, B])])["easy"] == pytest.approx(1.0)
    # Image 1 has no face and one pred at -10000: the min drops to -10000, so the three preds
    # normalise to 1, 0.99995, 0.99991 (all kept from t=0): P 2/3, R 1 -> AP 2/3. The faceless
    # pred itself is not a proposal (it would make P 1/2).
    both = run([with_face, pred([A], [-10000.0])], [faces([A, B]), faces([])])
    assert both["easy"] == pytest.approx(2 / 3, abs=1e-7)


def test_faces_without_predictions_still_count() -> None:
    # Image 0: faces A, B; preds A 1.0 (t=0), FAR 0.0 (t=999). Image 1: face C, no pred.
    # 3 faces. t 0..998: P 1, R 1/3; t 999: P .5.  AP = 1/3.
    result = run([pred([A, FAR], [1.0, 0.0]), pred([], [])], [faces([A, B]), faces([C])])
    assert result["hard"] == pytest.approx(1 / 3, abs=1e-7)


def test_equal_scores_and_empty_cases() -> None:
    # All scores equal: one operating point (P 1/2, R 1/2) -> AP 1/4, whatever the constant.
    target = [faces([A, B])]
    assert run([pred([A, FAR], [0.3, 0.3])], target)["easy"] == pytest.approx(0.25)
    # No prediction at all, or no face counting in a setting: AP 0.
    assert run([pred([], [])], target) == dict.fromkeys(SETTINGS, 0.0)
    result = run([pred([A], [0.9])], [faces([A], easy=[False])])
    assert result["easy"] == 0.0 and result["hard"] == 1.0


def test_invalid_inputs_are_rejected() -> None:
    metric = WiderFaceAP()
    with pytest.raises(KeyError, match="hard"):
        metric.update(
            [pred([A], [0.9])],
            [{"boxes": boxes(A), "easy": torch.tensor([True]), "medium": torch.tensor([True])}],
        )
    with pytest.raises(ValueError, match="easy"):
        metric.update([pred([A], [0.9])], [{**faces([A]), "easy": torch.tensor([True, False])}])


def random_case(seed: int, n_img: int = 12) -> tuple[list[dict], list[dict]]:
    """Crowded images with nested setting masks, duplicates, faceless and unpredicted images."""
    rng = np.random.default_rng(seed)
    preds, target = [], []
    for i in range(n_img):
        n_face = 0 if i % 5 == 4 else int(rng.integers(1, 9))
        xy = rng.integers(0, 120, size=(n_face, 2))
        wh = rng.integers(3, 30, size=(n_face, 2))
        g = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        hard = rng.random(n_face) < 0.9
        medium = hard & (rng.random(n_face) < 0.7)
        easy = medium & (rng.random(n_face) < 0.6)
        rows = [box + rng.integers(-3, 4, 4) for box in g for _ in range(int(rng.integers(0, 3)))]
        for _ in range(int(rng.integers(0, 5))):
            xy0 = rng.uniform(0, 130, 2)
            rows.append(np.concatenate([xy0, xy0 + rng.uniform(3, 30, 2)]))
        if i % 7 == 3:
            rows = []  # an image with faces and no prediction
        # Coarse scores on an arbitrary scale: ties, and values landing on thresholds.
        scores = (np.round(rng.random(len(rows)) * 20) * 0.5 - 3).astype(np.float32)
        preds.append(pred([list(r) for r in rows], scores.tolist()))
        target.append(faces(g.tolist(), easy.tolist(), medium.tolist(), hard.tolist()))
    return preds, target


@pytest.mark.parametrize("seed", range(4))
def test_random_cases_match_loop_reference(seed: int) -> None:
    preds, target = random_case(seed)
    expected = reference_wider(preds, target)
    metric = WiderFaceAP()
    metric.update(preds[: seed + 2], target[: seed + 2])
    metric.update(preds[seed + 2 :], target[seed + 2 :])
    got = {k: float(v) for k, v in metric.compute().items()}
    assert got == pytest.approx(expected, abs=1e-6)


# ------------------------------------------------------------------------------------------
# Distributed merging
# ------------------------------------------------------------------------------------------


def fake_gather_with(*others: WiderFaceAP):
    """A ``dist_sync_fn`` making this metric's sync see ``others`` as further ranks."""
    queue = []
    for name in others[0].metric_state:
        row = []
        for other in others:
            value = getattr(other, name)
            row.append(dim_zero_cat(value) if value else torch.zeros(0, dtype=other.dtype))
        queue.append(row)
    rows = iter(queue)

    def gather(tensor: torch.Tensor, group=None) -> list[torch.Tensor]:
        return [tensor, *next(rows)]

    return gather


def test_gathered_states_equal_single_process() -> None:
    preds, target = random_case(7, n_img=15)
    single = WiderFaceAP()
    single.update(preds, target)
    expected = single.compute()

    rank1, idle = WiderFaceAP(), WiderFaceAP()
    rank1.update(preds[6:], target[6:])
    rank0 = WiderFaceAP(
        dist_sync_fn=fake_gather_with(idle, rank1), distributed_available_fn=lambda: True
    )
    rank0.update(preds[:2], target[:2])
    rank0.update(preds[2:6], target[2:6])
    result = rank0.compute()
    assert {k: float(v) for k, v in result.items()} == {k: float(v) for k, v in expected.items()}
