"""The names of logged and reported values, defined once.

A logged value is named ``<split>/<name>`` (:func:`key`): ``split`` is ``train``, ``val`` or
``test`` (and ``float/test`` for the stage-2 teacher scored before quantization), ``name`` one
of the names below. The modules log them, ``results.json`` and the summaries read them, the study
tabulates them, and the configs' ``optimized_metric`` and checkpoint ``monitor`` name them
(a test checks that every config names a known one).
"""

from __future__ import annotations

# Splits
TRAIN, VAL, TEST = "train", "val", "test"
FLOAT_TEST = "float/test"  # the quantized teacher's test split before fine-tuning (stage 2)

# Detection metrics (DetectionMetrics): torchmetrics' COCO keys and the official protocols'.
MAP, MAP_50 = "map", "map_50"
VOC07_MAP = "voc07_map"
WIDER_EASY, WIDER_MEDIUM, WIDER_HARD = "wider_easy", "wider_medium", "wider_hard"
IMAGES = "images"  # images scored
SKIPPED = "skipped"  # samples left out of the split (data.on_bad_sample=skip)
# Distillation: how closely the student mimics, on the teacher's grid (MimicAgreement).
MIMIC_MATCH, MIMIC_DISTANCE = "mimic_match", "mimic_distance"
# Training
LOSS = "loss"
DETECTIONS = "detections"  # dashboard images

# The headline metrics of each evaluation protocol (shown in progress bars and summaries).
HEADLINES = {"voc": (MAP_50, VOC07_MAP), "wider": (MAP_50, WIDER_HARD)}

SCALARS = (MAP, MAP_50, VOC07_MAP, WIDER_EASY, WIDER_MEDIUM, WIDER_HARD, IMAGES, SKIPPED,
           MIMIC_MATCH, MIMIC_DISTANCE, LOSS)  # fmt: skip


def key(split: str, name: str) -> str:
    """``"<split>/<name>"``, e.g. ``key(TEST, VOC07_MAP) == "test/voc07_map"``."""
    return f"{split}/{name}"


def split_of(logged: str) -> tuple[str, str]:
    """``(split, name)`` of a logged key: ``"float/test/map"`` -> ``("float/test", "map")``."""
    split, _, name = logged.rpartition("/")
    return split, name
