"""Pascal VOC: the devkit layout on disk, its annotations, downloads, and the VOC source."""

from qmimic.data.voc.annotations import VOC_CLASSES, VOCDataset, parse_voc_annotation
from qmimic.data.voc.sources import VOCSource

__all__ = ["VOC_CLASSES", "VOCDataset", "VOCSource", "parse_voc_annotation"]
