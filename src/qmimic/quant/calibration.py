"""Calibrating feature quantizers on training batches before fitting."""

from __future__ import annotations

import lightning as L
import torch

from qmimic.quant.insertion import feature_quantizers
from qmimic.runs.log import get_logger

log = get_logger(__name__)


class CalibrateQuantizers(L.Callback):
    """At the start of ``fit``, set every uncalibrated quantizer's step from ``num_batches``
    training batches (see :meth:`FeatureQuantizer.start_calibration`).

    Runs without gradients in the module's current mode; quantizers restored from a checkpoint
    are already calibrated and are left alone, so resuming does not recalibrate.
    """

    def __init__(self, num_batches: int):
        self.num_batches = num_batches

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        quantizers = [q for q in feature_quantizers(pl_module.net) if not bool(q.calibrated)]
        if not quantizers or self.num_batches <= 0:
            return
        for q in quantizers:
            q.start_calibration()
        loader = trainer.datamodule.train_dataloader()
        with torch.no_grad():
            for index, (images, _) in enumerate(loader):
                if index >= self.num_batches:
                    break
                images = [image.to(pl_module.device) for image in images]
                pl_module.net.features(pl_module.net.prepare(images)[0])
        steps = [q.finish_calibration() for q in quantizers]
        log.info(
            "calibrated %d quantizer(s) on %d batches: step %s",
            len(steps),
            self.num_batches,
            ", ".join(f"{s:.4g}" for s in steps),
        )
