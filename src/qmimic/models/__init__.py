"""Detectors: width-scaled backbones in two-stage frameworks, behind one explicit API."""

from qmimic.models.builder import ARCHS, FRAMEWORKS, build_detector, count_parameters
from qmimic.models.detector import TwoStageDetector

__all__ = ["ARCHS", "FRAMEWORKS", "TwoStageDetector", "build_detector", "count_parameters"]
