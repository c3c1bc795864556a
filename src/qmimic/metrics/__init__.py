"""Detection metrics with the exact semantics of the PASCAL VOC and WIDER FACE benchmarks."""

from qmimic.metrics.voc import VOCMeanAP
from qmimic.metrics.widerface import WiderFaceAP

__all__ = ["VOCMeanAP", "WiderFaceAP"]
