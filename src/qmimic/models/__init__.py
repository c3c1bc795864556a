"""Detectors: width-scaled backbones in two-stage frameworks, behind one explicit API."""

from qmimic.models.builder import (
    ARCHS,
    FRAMEWORKS,
    DetectorConfigError,
    build_detector,
    count_parameters,
)
from qmimic.models.detector import TwoStageDetector
from qmimic.models.report import model_report

__all__ = [
    "ARCHS",
    "FRAMEWORKS",
    "DetectorConfigError",
    "TwoStageDetector",
    "build_detector",
    "count_parameters",
    "model_report",
]
