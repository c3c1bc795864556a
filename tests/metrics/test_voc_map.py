"""Tests of qmimic.metrics.VOCMeanAP against hand-computed cases and a loop-based devkit port.

Boxes use the devkit's +1 convention: [0, 0, 9, 9] is 10 x 10 = 100 pixels.
"""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchmetrics.utilities import dim_zero_cat

from qmimic.metrics import VOCMeanAP
from qmimic.metrics.matching import best_overlaps, pair_iou

A = [0, 0, 9, 9]
B = [20, 0, 29, 9]
C = [40, 0, 49, 9]
FAR = [200, 200, 209, 209]


def boxes(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(np.array(rows, dtype=np.float32)).reshape(-1, 4)


def pred(rows: list[list[float]], scores: list[float], labels: list[int]) -> dict:
    return {
        "boxes": boxes(*rows),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.tensor(labels, dtype=torch.long),
    }


def gt(rows: list[list[float]], labels: list[int], difficult: list[bool] | None = None) -> dict:
    out = {"boxes": boxes(*rows), "labels": torch.tensor(labels, dtype=torch.long)}
    if difficult is not None:
        out["difficult"] = torch.tensor(difficult, dtype=torch.bool)
    return out


def run(preds: list[dict], target: list[dict], **kwargs) -> dict:
    metric = VOCMeanAP(**kwargs)
    metric.update(preds, target)
    return metric.compute()


def ap_of(result: dict, label: int) -> float:
    classes = result["classes"].tolist()
    return float(result["ap_per_class"][classes.index(label)])


# ------------------------------------------------------------------------------------------
# Hand-made cases
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_07", [True, False])
def test_detection_on_difficult_object_counts_neither_way(use_07: bool) -> None:
    # gt: A (normal), B (difficult). Dets by score: B (on difficult: ignored), A (TP), C (FP).
    # npos = 1. Rows: (rec 0, prec 0/eps = 0), (1, 1), (1, 0.5).
    # 11-point: every level reaches rec 1 with max precision 1 -> 1. Area: 1 * 1 = 1.
    # Were the first detection a FP, precision at rec 1 would be 0.5 and AP 0.5.
    result = run(
        [pred([B, A, C], [0.9, 0.8, 0.7], [1, 1, 1])],
        [gt([A, B], [1, 1], [False, True])],
        use_07_metric=use_07,
    )
    assert result["classes"].tolist() == [1]
    assert float(result["map"]) == pytest.approx(1.0)


def test_best_match_difficult_hides_a_normal_object() -> None:
    # gt: A = [0,0,9,9] normal, A' = [0,0,9,10] difficult. The det equals A' (IoU 1) and also
    # overlaps A with 100/110 = 0.909 > 0.5, but only the best match matters: it is ignored.
    # npos = 1, no TP -> AP 0 (the class stays: it has a non-difficult object).
    result = run(
        [pred([[0, 0, 9, 10]], [0.9], [1])],
        [gt([A, [0, 0, 9, 10]], [1, 1], [False, True])],
    )
    assert result["classes"].tolist() == [1]
    assert float(result["map"]) == 0.0


def test_duplicate_is_false_positive_and_07_differs_from_area() -> None:
    # gt: A, B (npos 2). Dets: A 0.9 (TP), A 0.8 (duplicate -> FP), B 0.7 (TP).
    # rec = [0.5, 0.5, 1], prec = [1, 0.5, 2/3].
    # 11-point: t = 0..0.5 (6 levels) -> 1; t = 0.6..1.0 (5 levels) -> 2/3;
    #   AP = (6 + 5 * 2/3) / 11 = 28/33.
    # Area: envelope [1, 2/3, 2/3]; 0.5 * 1 + 0.5 * 2/3 = 5/6.
    preds = [pred([A, A, B], [0.9, 0.8, 0.7], [3, 3, 3])]
    target = [gt([A, B], [3, 3])]
    assert float(run(preds, target)["map"]) == pytest.approx(28 / 33, abs=1e-7)
    assert float(run(preds, target, use_07_metric=False)["map"]) == pytest.approx(5 / 6, abs=1e-7)


@pytest.mark.parametrize("use_07", [True, False])
def test_equal_scores_keep_input_order(use_07: bool) -> None:
    # One gt A. Two dets with the same score: one FP (FAR), one TP (A).
    # FP first: rows (0, 0), (1, 0.5) -> AP 0.5 under both rules.
    # TP first: rows (1, 1), (1, 0.5) -> AP 1.
    fp_first = run([pred([FAR, A], [0.5, 0.5], [0, 0])], [gt([A], [0])], use_07_metric=use_07)
    tp_first = run([pred([A, FAR], [0.5, 0.5], [0, 0])], [gt([A], [0])], use_07_metric=use_07)
    assert float(fp_first["map"]) == pytest.approx(0.5)
    assert float(tp_first["map"]) == pytest.approx(1.0)

    # Across images and across update calls the order is image order, then call order.
    img_fp, img_tp = pred([FAR], [0.5], [0]), pred([A], [0.5], [0])
    t0, t1 = gt([], []), gt([A], [0])
    assert float(run([img_fp, img_tp], [t0, t1], use_07_metric=use_07)["map"]) == pytest.approx(0.5)
    metric = VOCMeanAP(use_07_metric=use_07)
    metric.update([img_tp], [t1])
    metric.update([img_fp], [t0])
    assert float(metric.compute()["map"]) == pytest.approx(1.0)


def test_tied_equal_overlaps_take_the_first_ground_truth() -> None:
    # The det [0,0,19,9] overlaps A=[0,0,9,9] and [10,0,19,9] with IoU 100/200 = 0.5 each
    # (threshold lowered to 0.4). The first gt (difficult) wins, so the det is ignored and
    # AP = 0; were the second (normal) gt taken it would be a TP with AP 1.
    target = [gt([A, [10, 0, 19, 9]], [0, 0], [True, False])]
    result = run([pred([[0, 0, 19, 9]], [0.9], [0])], target, iou_threshold=0.4)
    assert float(result["map"]) == 0.0


def test_empty_images_change_nothing_and_empty_metric_is_zero() -> None:
    preds = [pred([A, B], [0.9, 0.8], [1, 1])]
    target = [gt([A], [1])]
    empty_pred, empty_gt = pred([], [], []), gt([], [])
    base = run(preds, target)
    padded = run([empty_pred, *preds, empty_pred], [empty_gt, *target, empty_gt])
    assert torch.equal(base["ap_per_class"], padded["ap_per_class"])

    metric = VOCMeanAP()
    metric.update([empty_pred], [empty_gt])
    result = metric.compute()
    assert float(result["map"]) == 0.0
    assert result["classes"].numel() == 0 and result["ap_per_class"].numel() == 0


def test_class_without_detections_has_zero_ap_and_counts_in_the_mean() -> None:
    # Class 1: one gt, one TP -> AP 1. Class 2: one gt, no detection -> AP 0. mAP = 0.5.
    result = run([pred([A], [0.9], [1])], [gt([A, B], [1, 2])])
    assert result["classes"].tolist() == [1, 2]
    assert result["ap_per_class"].tolist() == pytest.approx([1.0, 0.0])
    assert float(result["map"]) == pytest.approx(0.5)


def test_classes_with_only_difficult_objects_or_only_detections_are_excluded() -> None:
    # Class 4: only a difficult gt (its detection is ignored). Class 5: detections only.
    # Class 6: a normal gt detected -> AP 1. Only class 6 is reported; mAP = 1.
    result = run(
        [pred([A, B, C], [0.9, 0.8, 0.7], [4, 5, 6])],
        [gt([A, C], [4, 6], [True, False])],
    )
    assert result["classes"].tolist() == [6]
    assert float(result["map"]) == pytest.approx(1.0)


def test_overlap_exactly_at_threshold_is_not_a_match() -> None:
    # [0,0,19,9] (area 200) contains A (area 100): IoU = 100/200 = 0.5, not > 0.5 -> FP, AP 0.
    # [0,0,18,9] (area 190): IoU = 100/190 = 0.526 -> TP, AP 1.
    assert float(run([pred([[0, 0, 19, 9]], [0.9], [0])], [gt([A], [0])])["map"]) == 0.0
    assert float(run([pred([[0, 0, 18, 9]], [0.9], [0])], [gt([A], [0])])["map"]) == 1.0
    iou = pair_iou(boxes([0, 0, 19, 9]).double(), boxes(A).double())
    assert float(iou) == 0.5


def test_recall_level_0_3_is_numpy_arange_0_30000000000000004() -> None:
    # 10 objects, 3 found first: rec = 0.3 exactly, which is below the devkit's level
    # np.arange(0, 1.1, 0.1)[3] = 0.30000000000000004. Levels 0, 0.1, 0.2 give 1 -> 3/11.
    gts = [[20 * i, 0, 20 * i + 9, 9] for i in range(10)]
    result = run([pred(gts[:3], [0.9, 0.8, 0.7], [0, 0, 0])], [gt(gts, [0] * 10)])
    assert float(result["map"]) == pytest.approx(3 / 11, abs=1e-7)


def test_single_class_outputs_stay_one_dimensional() -> None:
    result = run([pred([A], [0.9], [2])], [gt([A], [2])])
    assert result["classes"].shape == (1,) and result["ap_per_class"].shape == (1,)
    assert result["map"].shape == ()
    assert result["classes"].dtype == torch.long


def test_invalid_inputs_are_rejected() -> None:
    metric = VOCMeanAP()
    with pytest.raises(ValueError, match="predictions for"):
        metric.update([pred([A], [0.9], [0])], [])
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        metric.update([{**pred([A], [0.9], [0]), "boxes": torch.zeros(1, 5)}], [gt([A], [0])])
    with pytest.raises(ValueError, match="scores"):
        metric.update([pred([A], [0.9, 0.8], [0])], [gt([A], [0])])
    with pytest.raises(ValueError, match="iou_threshold"):
        VOCMeanAP(iou_threshold=1.0)


# ------------------------------------------------------------------------------------------
# Loop-based reference: a direct port of the devkit procedure (voc_eval.py) on numpy
# ------------------------------------------------------------------------------------------


def reference_voc_ap(rec: np.ndarray, prec: np.ndarray, use_07: bool) -> float:
    if use_07:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0.0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap += p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = max(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def reference_class_ap(
    preds: list[dict], target: list[dict], cls: int, use_07: bool, thr: float
) -> float | None:
    recs, npos = {}, 0
    for i, t in enumerate(target):
        sel = (t["labels"] == cls).numpy()
        diff = t.get("difficult", torch.zeros(len(sel), dtype=torch.bool)).numpy()[sel]
        recs[i] = {
            "bbox": t["boxes"].numpy()[sel].astype(float),
            "difficult": diff,
            "det": [False] * int(sel.sum()),
        }
        npos += int((~diff).sum())
    if npos == 0:
        return None
    image_ids, confidence, det_boxes = [], [], []
    for i, p in enumerate(preds):
        for j in np.nonzero((p["labels"] == cls).numpy())[0]:
            image_ids.append(i)
            confidence.append(float(p["scores"][j]))
            det_boxes.append(p["boxes"][j].numpy().astype(float))
    order = np.argsort(-np.array(confidence), kind="stable")
    nd = len(order)
    tp, fp = np.zeros(nd), np.zeros(nd)
    for d, k in enumerate(order):
        r, bb = recs[image_ids[k]], det_boxes[k]
        ovmax, jmax, bbgt = -np.inf, -1, r["bbox"]
        if bbgt.size > 0:
            iw = np.maximum(
                np.minimum(bbgt[:, 2], bb[2]) - np.maximum(bbgt[:, 0], bb[0]) + 1.0, 0.0
            )
            ih = np.maximum(
                np.minimum(bbgt[:, 3], bb[3]) - np.maximum(bbgt[:, 1], bb[1]) + 1.0, 0.0
            )
            inters = iw * ih
            uni = (
                (bb[2] - bb[0] + 1.0) * (bb[3] - bb[1] + 1.0)
                + (bbgt[:, 2] - bbgt[:, 0] + 1.0) * (bbgt[:, 3] - bbgt[:, 1] + 1.0)
                - inters
            )
            overlaps = inters / uni
            ovmax, jmax = np.max(overlaps), int(np.argmax(overlaps))
        if ovmax > thr:
            if not r["difficult"][jmax]:
                if not r["det"][jmax]:
                    tp[d] = 1.0
                    r["det"][jmax] = True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return reference_voc_ap(rec, prec, use_07)


def reference_voc(preds: list[dict], target: list[dict], use_07: bool, thr: float = 0.5) -> dict:
    labels = set()
    for d in [*preds, *target]:
        labels.update(d["labels"].tolist())
    aps = {}
    for cls in sorted(labels):
        ap = reference_class_ap(preds, target, cls, use_07, thr)
        if ap is not None:
            aps[cls] = ap
    return aps


def random_case(seed: int, n_img: int = 24) -> tuple[list[dict], list[dict]]:
    """Random images with ties, duplicates, difficult objects, empty images, extra classes."""
    rng = np.random.default_rng(seed)
    preds, target = [], []
    for _ in range(n_img):
        n_gt = int(rng.integers(0, 6))
        xy = rng.integers(0, 80, size=(n_gt, 2))
        wh = rng.integers(4, 40, size=(n_gt, 2))
        g = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        g_lab = rng.choice([0, 1, 2, 3, 9], size=n_gt, p=[0.3, 0.3, 0.2, 0.1, 0.1])
        diff = (rng.random(n_gt) < 0.25) | (g_lab == 9)  # class 9: difficult only
        d_rows, d_lab = [], []
        for box, lab in zip(g, g_lab, strict=True):
            for _ in range(int(rng.integers(0, 3))):  # 0..2 jittered copies -> duplicates
                d_rows.append(box + rng.integers(-4, 5, size=4).astype(np.float32))
                d_lab.append(lab if rng.random() < 0.9 else rng.integers(0, 4))
        for _ in range(int(rng.integers(0, 4))):  # background detections
            xy0 = rng.uniform(0, 90, 2)
            d_rows.append(np.concatenate([xy0, xy0 + rng.uniform(3, 40, 2)]).astype(np.float32))
            d_lab.append(rng.choice([0, 1, 2, 3, 7]))  # class 7: detections only
        n_det = len(d_rows)
        scores = np.round(rng.random(n_det), 1).astype(np.float32)  # many ties
        preds.append(pred(d_rows, scores.tolist(), [int(v) for v in d_lab]))
        target.append(gt(g.tolist(), g_lab.tolist(), diff.tolist()))
    return preds, target


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("use_07", [True, False])
def test_random_cases_match_loop_reference(seed: int, use_07: bool) -> None:
    preds, target = random_case(seed)
    thr = 0.5 if seed % 2 == 0 else 0.3
    expected = reference_voc(preds, target, use_07, thr)
    metric = VOCMeanAP(use_07_metric=use_07, iou_threshold=thr)
    split = 1 + seed * 3  # several update calls
    metric.update(preds[:split], target[:split])
    metric.update(preds[split:], target[split:])
    result = metric.compute()
    assert result["classes"].tolist() == sorted(expected)
    got = result["ap_per_class"].double().numpy()
    np.testing.assert_allclose(got, [expected[c] for c in sorted(expected)], atol=1e-6)
    assert float(result["map"]) == pytest.approx(np.mean(list(expected.values())), abs=1e-6)


def test_sparse_label_values_match_reference() -> None:
    # Labels spread over a range too wide for the offset mapping go through torch.unique.
    preds, target = random_case(3)
    sparse = {0: -5, 1: 40_000, 2: 1_000_000, 3: 7, 7: 123_456, 9: 3_000_000}
    for d in [*preds, *target]:
        d["labels"] = torch.tensor([sparse[v] for v in d["labels"].tolist()], dtype=torch.long)
    expected = reference_voc(preds, target, use_07=False)
    result = run(preds, target, use_07_metric=False)
    assert result["classes"].tolist() == sorted(expected)
    np.testing.assert_allclose(
        result["ap_per_class"].double().numpy(), [expected[c] for c in sorted(expected)], atol=1e-6
    )


def test_pair_chunking_does_not_change_matches() -> None:
    rng = np.random.default_rng(0)
    det = torch.tensor(rng.integers(0, 50, (300, 2)), dtype=torch.float64).repeat(1, 2)
    det[:, 2:] += torch.tensor(rng.integers(2, 30, (300, 2)))
    gt_boxes = det[rng.permutation(300)[:120]] + 1.0
    det_group = torch.tensor(rng.integers(0, 7, 300))
    gt_group = torch.tensor(rng.integers(0, 9, 120))
    full = best_overlaps(det, det_group, gt_boxes, gt_group)
    chunked = best_overlaps(det, det_group, gt_boxes, gt_group, max_pairs=7)
    assert torch.equal(full[0], chunked[0]) and torch.equal(full[1], chunked[1])


# ------------------------------------------------------------------------------------------
# Distributed merging
# ------------------------------------------------------------------------------------------


def fake_gather_with(*others: VOCMeanAP):
    """A ``dist_sync_fn`` making this metric's sync see ``others`` as further ranks.

    torchmetrics gathers each state in registration order, after concatenating list states;
    a rank without any update contributes an empty tensor of the metric dtype.
    """
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


@pytest.mark.parametrize("use_07", [True, False])
def test_gathered_states_equal_single_process(use_07: bool) -> None:
    preds, target = random_case(11, n_img=30)
    single = VOCMeanAP(use_07_metric=use_07)
    single.update(preds, target)
    expected = single.compute()

    rank1, rank2, idle = (VOCMeanAP(use_07_metric=use_07) for _ in range(3))
    rank1.update(preds[10:20], target[10:20])
    rank2.update(preds[20:], target[20:])
    rank0 = VOCMeanAP(
        use_07_metric=use_07,
        dist_sync_fn=fake_gather_with(rank1, idle, rank2),
        distributed_available_fn=lambda: True,
    )
    rank0.update(preds[:4], target[:4])
    rank0.update(preds[4:10], target[4:10])
    result = rank0.compute()
    # Same image boundaries in the same order: results must be identical, not just close.
    assert torch.equal(result["classes"], expected["classes"])
    assert torch.equal(result["ap_per_class"], expected["ap_per_class"])


def _ddp_worker(rank: int, port: int, chunks: list, expected: list[float]) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=len(chunks))
    try:
        metric = VOCMeanAP()
        for preds, target in chunks[rank]:
            metric.update(preds, target)
        result = metric.compute()
        np.testing.assert_allclose(result["ap_per_class"].numpy(), expected, atol=1e-7)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_real_gloo_ddp_matches_single_process() -> None:
    preds, target = random_case(5, n_img=20)
    single = VOCMeanAP()
    single.update(preds, target)
    expected = single.compute()["ap_per_class"].tolist()
    # Uneven shards and one rank without any update.
    chunks = [[(preds[:3], target[:3]), (preds[3:8], target[3:8])], [], [(preds[8:], target[8:])]]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(port, chunks, expected), nprocs=len(chunks), join=True)
