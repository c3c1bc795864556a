"""Detection data: the DataModule, and its sources grouped by format (:mod:`~qmimic.data.voc`,
:mod:`~qmimic.data.widerface`, :mod:`~qmimic.data.coco`) and by generated sets
(:mod:`~qmimic.data.synthetic`).

The configs name sources by these package-level names (``qmimic.data.ShapesSource``), which
stay put when modules move.
"""

from qmimic.data.coco import CocoDataset, CocoSource
from qmimic.data.datamodule import DetectionDataModule, collate_detection
from qmimic.data.images import BadSampleError, load_rgb_image
from qmimic.data.report import DataReport, DataWarning
from qmimic.data.synthetic import (
    SHAPES_CLASSES,
    FacesSource,
    FacesSpec,
    ShapesSource,
    ShapesSpec,
    ensure_faces,
    ensure_shapes,
)
from qmimic.data.voc import (
    VOC_CLASSES,
    VOCDataset,
    VOCFolderDataset,
    VOCFolderSource,
    VOCSource,
    parse_voc_annotation,
)
from qmimic.data.widerface import (
    WIDER_CLASSES,
    WiderFaceDataset,
    WiderFaceSource,
    parse_wider_annotations,
)

__all__ = [
    "SHAPES_CLASSES",
    "VOC_CLASSES",
    "WIDER_CLASSES",
    "BadSampleError",
    "CocoDataset",
    "CocoSource",
    "DataReport",
    "DataWarning",
    "DetectionDataModule",
    "FacesSource",
    "FacesSpec",
    "ShapesSource",
    "ShapesSpec",
    "VOCDataset",
    "VOCFolderDataset",
    "VOCFolderSource",
    "VOCSource",
    "WiderFaceDataset",
    "WiderFaceSource",
    "collate_detection",
    "ensure_faces",
    "ensure_shapes",
    "load_rgb_image",
    "parse_voc_annotation",
    "parse_wider_annotations",
]
