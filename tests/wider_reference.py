"""The official WIDER FACE evaluation (``eval_tools`` and its Python port ``evaluation.py``),
transcribed loop for loop on numpy, as the reference the tests hold ``WiderFaceAP`` to.

``reference_wider`` takes per-image dicts as the metric does; ``reference_from_lists`` reads
the ground truth straight from the official ``.mat`` files, as the official code does, so it
checks the dataset reader and the metric together.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.io import loadmat

SETTINGS = ("easy", "medium", "hard")


def ref_overlaps(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    out = np.zeros((len(p), len(g)))
    for n in range(len(p)):
        for k in range(len(g)):
            iw = min(p[n, 2], g[k, 2]) - max(p[n, 0], g[k, 0]) + 1
            ih = min(p[n, 3], g[k, 3]) - max(p[n, 1], g[k, 1]) + 1
            if iw > 0 and ih > 0:
                p_area = (p[n, 2] - p[n, 0] + 1) * (p[n, 3] - p[n, 1] + 1)
                g_area = (g[k, 2] - g[k, 0] + 1) * (g[k, 3] - g[k, 1] + 1)
                out[n, k] = iw * ih / float(p_area + g_area - iw * ih)
    return out


def ref_image_eval(p: np.ndarray, g: np.ndarray, ignore: np.ndarray, thr: float):
    pred_recall = np.zeros(len(p))
    recall_list = np.zeros(len(g))
    proposal_list = np.ones(len(p))
    overlaps = ref_overlaps(p[:, :4], g)
    for h in range(len(p)):
        max_overlap, max_idx = overlaps[h].max(), overlaps[h].argmax()
        if max_overlap >= thr:
            if ignore[max_idx] == 0:
                recall_list[max_idx] = -1
                proposal_list[h] = -1
            elif recall_list[max_idx] == 0:
                recall_list[max_idx] = 1
        pred_recall[h] = len(np.where(recall_list == 1)[0])
    return pred_recall, proposal_list


def ref_img_pr_info(p: np.ndarray, proposal_list: np.ndarray, pred_recall: np.ndarray):
    info = np.zeros((1000, 2))
    for t in range(1000):
        thresh = 1 - (t + 1) / 1000
        r_index = np.where(p[:, 4] >= thresh)[0]
        if len(r_index):
            last = r_index[-1]
            info[t, 0] = len(np.where(proposal_list[: last + 1] == 1)[0])
            info[t, 1] = pred_recall[last]
    return info


def ref_voc_ap(rec: np.ndarray, prec: np.ndarray) -> float:
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])  # NaN propagates, as in the original
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def reference_wider(preds: list[dict], target: list[dict]) -> dict[str, float]:
    """APs as the official loop computes them for per-image ``preds`` and ``target`` dicts (as
    ``WiderFaceAP.update`` takes them)."""
    images = _normalised(dict(enumerate(preds)))
    aps = {}
    for setting in SETTINGS:
        count_face, pr_curve = 0, np.zeros((1000, 2))
        for i, t in enumerate(target):
            g = t["boxes"].numpy().astype(float)
            keep = t[setting].numpy()
            count_face += int(keep.sum())
            if len(g) == 0 or len(images[i]) == 0:
                continue
            pred_recall, proposal_list = ref_image_eval(images[i], g, keep.astype(float), 0.5)
            pr_curve += ref_img_pr_info(images[i], proposal_list, pred_recall)
        aps[setting] = _ap(pr_curve, count_face)
    return aps


def _ap(pr_curve: np.ndarray, count_face: int) -> float:
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = pr_curve[:, 1] / pr_curve[:, 0]
        recall = pr_curve[:, 1] / count_face
    return ref_voc_ap(recall, precision)


def _normalised(preds: dict) -> dict:
    """Per image ``[x1, y1, x2, y2, score]`` rows, scores min-max normalised over the set and
    sorted by descending score (MATLAB ``sort(..., 'descend')``)."""
    scores = np.concatenate([p["scores"].numpy().astype(float) for p in preds.values()])
    lo, hi = scores.min(), scores.max()
    rows = {}
    for key, p in preds.items():
        s = (p["scores"].numpy().astype(float) - lo) / (hi - lo)
        r = np.concatenate([p["boxes"].numpy().astype(float).reshape(-1, 4), s[:, None]], 1)
        rows[key] = r[np.argsort(-s, kind="stable")]
    return rows


def reference_from_lists(gt_dir: Path, preds: dict[str, dict]) -> dict[str, float]:
    """APs as ``evaluation.py`` computes them from ``gt_dir``'s ``.mat`` files, for ``preds``
    keyed ``<event>/<name>`` (``boxes`` xyxy pixels, ``scores``); images without predictions
    may be left out of ``preds``."""
    face = loadmat(gt_dir / "wider_face_val.mat")
    events = [str(e[0][0]) for e in face["event_list"]]
    rows = _normalised(preds)
    aps = {}
    for setting in SETTINGS:
        gt_list = loadmat(gt_dir / f"wider_{setting}_val.mat")["gt_list"]
        count_face, pr_curve = 0, np.zeros((1000, 2))
        for i, event in enumerate(events):
            names = face["file_list"][i][0]
            for j in range(len(names)):
                gt_xywh = face["face_bbx_list"][i][0][j][0].astype(float).reshape(-1, 4)
                keep = gt_list[i][0][j][0].ravel().astype(int)
                count_face += len(keep)
                p = rows.get(f"{event}/{names[j][0][0]}", np.zeros((0, 5)))
                if len(gt_xywh) == 0 or len(p) == 0:
                    continue
                g = np.concatenate([gt_xywh[:, :2], gt_xywh[:, :2] + gt_xywh[:, 2:]], 1)
                ignore = np.zeros(len(g))
                ignore[keep - 1] = 1
                pred_recall, proposal_list = ref_image_eval(p, g, ignore, 0.5)
                pr_curve += ref_img_pr_info(p, proposal_list, pred_recall)
        aps[setting] = _ap(pr_curve, count_face)
    return aps
