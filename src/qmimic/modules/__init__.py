"""LightningModules: the training systems around plain detector networks."""

from qmimic.modules.detector_module import DetectorModule

__all__ = ["DetectorModule"]
