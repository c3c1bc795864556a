"""A detector made ready for inference: what ``predict`` and the export run."""

from __future__ import annotations

import torch
from torch import nn

from qmimic.models.fast_rcnn_head import SingleMapRoIAlign
from qmimic.models.fusion import fold_batchnorm


def for_inference(model: nn.Module) -> nn.Module:
    """Put ``model`` in eval mode, fold its BatchNorm into the convolutions
    (:func:`~qmimic.models.fusion.fold_batchnorm`), store its convolution weights channels-last
    (the convolutions then run, and pass on, channels-last maps: oneDNN's fast layout on the CPU,
    also for max-pooling and the region gather, which reads that layout) and let its region
    pooling gather on the CPU (:class:`~qmimic.models.fast_rcnn_head.SingleMapRoIAlign`); in
    place, returns ``model``.

    Detections equal the unprepared model's within float rounding. Meant for a model that is
    not trained further: the folded convolutions no longer have norms to train.
    """
    fold_batchnorm(model.eval())
    model.to(memory_format=torch.channels_last)
    for module in model.modules():
        if isinstance(module, SingleMapRoIAlign):
            module.gather_on_cpu = True
    return model
