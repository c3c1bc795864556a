"""Pascal VOC: the devkit layout on disk, its annotations, downloads, the VOC source, and one
exported folder in its format (users' own classes)."""

from qmimic.data.voc.annotations import VOC_CLASSES, VOCDataset, parse_voc_annotation
from qmimic.data.voc.folder import VOCFolderDataset, VOCFolderSource
from qmimic.data.voc.sources import VOCSource

__all__ = [
    "VOC_CLASSES",
    "VOCDataset",
    "VOCFolderDataset",
    "VOCFolderSource",
    "VOCSource",
    "parse_voc_annotation",
]
