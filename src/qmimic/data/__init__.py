"""Detection data: Pascal VOC and WIDER FACE readers, the built-in ``shapes`` and ``faces`` sets,
their sources and the DataModule."""

from qmimic.data.datamodule import DetectionDataModule, collate_detection
from qmimic.data.faces import FacesSpec, ensure_faces
from qmimic.data.report import DataReport, DataWarning
from qmimic.data.shapes import SHAPES_CLASSES, ShapesSpec, ensure_shapes
from qmimic.data.sources import ShapesSource, VOCSource
from qmimic.data.voc import VOC_CLASSES, BadSampleError, VOCDataset, parse_voc_annotation
from qmimic.data.wider_sources import FacesSource, WiderFaceSource
from qmimic.data.widerface import WIDER_CLASSES, WiderFaceDataset, parse_wider_annotations

__all__ = [
    "SHAPES_CLASSES",
    "VOC_CLASSES",
    "WIDER_CLASSES",
    "BadSampleError",
    "DataReport",
    "DataWarning",
    "DetectionDataModule",
    "FacesSource",
    "FacesSpec",
    "ShapesSource",
    "ShapesSpec",
    "VOCDataset",
    "VOCSource",
    "WiderFaceDataset",
    "WiderFaceSource",
    "collate_detection",
    "ensure_faces",
    "ensure_shapes",
    "parse_voc_annotation",
    "parse_wider_annotations",
]
