"""A detector made ready for inference: what ``predict`` and the export run."""

from __future__ import annotations

from torch import nn

from qmimic.models.fast_rcnn_head import SingleMapRoIAlign
from qmimic.models.fusion import fold_batchnorm


def for_inference(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode, fold its BatchNorm into the convolutions
    (:func:`~qmimic.models.fusion.fold_batchnorm`) and let its region pooling gather on the CPU
    (:class:`~qmimic.models.fast_rcnn_head.SingleMapRoIAlign`); in place, returns ``model``.

    Detections equal the unprepared model's within float rounding. Meant for a model that is
    not trained further: the folded convolutions no longer have norms to train.
    """
    fold_batchnorm(model.eval())
    for module in model.modules():
        if isinstance(module, SingleMapRoIAlign):
            module.gather_on_cpu = True
    return model
