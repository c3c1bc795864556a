"""qmimic: very tiny object detectors trained with Quantization Mimic."""

__version__ = "0.1.0"
