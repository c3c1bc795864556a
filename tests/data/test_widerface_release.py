"""WIDER FACE as released, end to end: a tree in the official formats (annotation text, ``.mat``
lists, images without faces in both spellings) read by the dataset and scored by ``WiderFaceAP``
gives the official evaluation's APs, computed straight from the ``.mat`` files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from trees import face, write_wider

from qmimic.data.widerface.annotations import WiderFaceDataset
from qmimic.metrics import WiderFaceAP
from wider_reference import reference_from_lists

TRAIN = [("0--Parade/t.jpg", [face(4, 5, 20, 22)])]


def detections(rows: list[list[float]], scores: list[float]) -> dict:
    return {
        "boxes": torch.tensor(rows, dtype=torch.float32).reshape(-1, 4),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "labels": torch.ones(len(scores), dtype=torch.int64),
    }


def score(root: Path, preds: dict[str, dict]) -> dict[str, float]:
    """``WiderFaceAP`` over the dataset's evaluation targets of ``root`` (every val image, those
    without detections included)."""
    dataset = WiderFaceDataset(root, "val")
    metric = WiderFaceAP()
    for index in range(len(dataset)):
        _, target = dataset[index]
        metric.update([preds.get(target["image_id"], detections([], []))], [target])
    return {k: float(v) for k, v in metric.compute().items()}


def test_detections_on_images_without_faces_are_false_positives(tmp_path: Path):
    val = [
        ("0--Parade/A.jpg", [face(4, 5, 24, 26), face(40, 30, 8, 8)]),
        ("0--Parade/B.jpg", []),  # written "1" + zeros (the released val spelling)
        ("1--Handshaking/C.jpg", []),  # written "0" + zeros
    ]
    settings = {"easy": [[1], [], []], "medium": [[1], [], []], "hard": [[1, 2], [], []]}
    write_wider(tmp_path, TRAIN, val, settings, empty_counts=(1, 0))
    preds = {
        "0--Parade/A": detections([[4, 5, 28, 31], [40, 30, 48, 38]], [0.9, 0.7]),
        "0--Parade/B": detections([[10, 10, 30, 30]], [0.8]),
    }
    # Scores normalised over the set: A1 0.9 -> 1, B 0.8 -> 0.5, A2 0.7 -> 0.
    # hard (A1, A2 count): A1 enters first (precision 1, recall 1/2), then B, a false positive
    # since B is scored (1/2, 1/2), then A2 (2/3, 1). Envelope area:
    # 1/2 * 1 + 1/2 * 2/3 = 5/6. (Skipping B, as images without faces were, gives 1.)
    # easy, medium (A1 counts, A2 is ignored): A1 (1, 1), then B (1/2, 1): area 1.
    expected = {"easy": 1.0, "medium": 1.0, "hard": 5 / 6}
    assert score(tmp_path, preds) == pytest.approx(expected, abs=1e-6)  # float32 APs
    gt_dir = tmp_path / "eval_tools" / "ground_truth"
    assert reference_from_lists(gt_dir, preds) == pytest.approx(expected, abs=1e-9)


def random_release(root: Path, seed: int, images: int = 30) -> dict[str, dict]:
    """A val set of crowded, sparse and face-less images with random detections everywhere."""
    rng = np.random.default_rng(seed)
    val, settings = [], {"easy": [], "medium": [], "hard": []}
    preds = {}
    for i in range(images):
        event = ("0--Parade", "1--Handshaking", "2--Demonstration")[i % 3]
        count = 0 if i % 6 == 5 else int(rng.integers(1, 8))
        xy = rng.integers(0, 120, size=(count, 2))
        wh = rng.integers(4, 36, size=(count, 2))
        faces = [
            face(int(x), int(y), int(w), int(h)) for (x, y), (w, h) in zip(xy, wh, strict=True)
        ]
        hard = [k + 1 for k in range(count) if rng.random() < 0.9]
        medium = [k for k in hard if rng.random() < 0.7]
        settings["hard"].append(hard)
        settings["medium"].append(medium)
        settings["easy"].append([k for k in medium if rng.random() < 0.6])
        name = f"{event}/img_{i}.jpg"
        val.append((name, faces))
        rows = [[x + d, y + d, x + w + d, y + h + d] for (x, y), (w, h) in zip(xy, wh, strict=True)
                for d in rng.integers(-3, 4, size=int(rng.integers(0, 3)))]  # fmt: skip
        for _ in range(int(rng.integers(0, 4))):  # stray boxes, face-less images included
            x, y = rng.uniform(0, 130, 2)
            rows.append([x, y, x + rng.uniform(4, 30), y + rng.uniform(4, 30)])
        scores = (np.round(rng.random(len(rows)) * 40) / 40).tolist()  # ties and threshold hits
        preds[name[: -len(".jpg")]] = detections(rows, scores)
    write_wider(root, TRAIN, val, settings, size=(170, 170), empty_counts=(0, 1))
    return preds


@pytest.mark.parametrize("seed", range(3))
def test_random_release_matches_the_official_evaluation(tmp_path: Path, seed: int):
    preds = random_release(tmp_path, seed)
    expected = reference_from_lists(tmp_path / "eval_tools" / "ground_truth", preds)
    assert score(tmp_path, preds) == pytest.approx(expected, abs=1e-6)
