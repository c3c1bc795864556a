"""Feature quantization: the quantizer and where it goes on a detector."""

from qmimic.quant.insertion import (
    QuantizationPlan,
    QuantizedOutput,
    feature_quantizers,
    insert_quantizers,
    remove_quantizers,
)
from qmimic.quant.quantizer import FeatureQuantizer

__all__ = [
    "FeatureQuantizer",
    "QuantizationPlan",
    "QuantizedOutput",
    "feature_quantizers",
    "insert_quantizers",
    "remove_quantizers",
]
