"""WIDER FACE: the official release's layout, annotations and setting lists, and its source."""

from qmimic.data.widerface.annotations import (
    WIDER_CLASSES,
    WiderFaceDataset,
    parse_wider_annotations,
)
from qmimic.data.widerface.sources import WiderFaceSource

__all__ = ["WIDER_CLASSES", "WiderFaceDataset", "WiderFaceSource", "parse_wider_annotations"]
