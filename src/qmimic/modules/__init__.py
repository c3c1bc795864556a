"""LightningModules: the training systems around plain detector networks."""

from qmimic.modules.detector_module import DetectorModule
from qmimic.modules.distill_module import DistillModule

__all__ = ["DetectorModule", "DistillModule"]
