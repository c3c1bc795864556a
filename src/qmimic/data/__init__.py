"""Detection data: VOC-layout readers, the built-in ``shapes`` set and the DataModule."""

from qmimic.data.datamodule import DetectionDataModule, collate_detection
from qmimic.data.shapes import SHAPES_CLASSES, ShapesSpec, ensure_shapes
from qmimic.data.sources import ShapesSource, VOCSource
from qmimic.data.voc import VOC_CLASSES, VOCDataset, parse_voc_annotation

__all__ = [
    "SHAPES_CLASSES",
    "VOC_CLASSES",
    "DetectionDataModule",
    "ShapesSource",
    "ShapesSpec",
    "VOCDataset",
    "VOCSource",
    "collate_detection",
    "ensure_shapes",
    "parse_voc_annotation",
]
