"""Calibrating feature quantizers on training batches: once before fitting, or again at the
start of every epoch (see :class:`~qmimic.quant.insertion.QuantizationPlan`'s step rules)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice

import lightning as L
import torch
from torch import Tensor, nn

from qmimic.log import get_logger
from qmimic.quant.insertion import feature_quantizers
from qmimic.quant.quantizer import FeatureQuantizer

log = get_logger(__name__)


@contextmanager
def batchnorm_statistics_kept(module: nn.Module) -> Iterator[None]:
    """Restore every BatchNorm running statistic of ``module`` on exit: calibration forwards in
    training mode must not move them (they are part of the model, not of the calibration)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False)} for m in norms]
    try:
        yield
    finally:
        for norm, buffers in zip(norms, saved, strict=True):
            for name, value in buffers.items():
                getattr(norm, name).copy_(value)


@torch.no_grad()
def calibrate(
    quantizers: list[FeatureQuantizer],
    forward: Callable[[list[Tensor]], object],
    batches: Iterable[tuple[list[Tensor], object]],
    num_batches: int,
) -> list[float]:
    """Set the step of each of ``quantizers`` from ``num_batches`` of ``batches``.

    ``forward(images)`` must pass each batch's images through the quantizers (e.g. a detector's
    ``features``); the quantizers only observe meanwhile. Returns the new steps.
    """
    for q in quantizers:
        q.start_calibration()
    for images, _ in islice(batches, num_batches):
        forward(images)
    return [q.finish_calibration() for q in quantizers]


class CalibrateQuantizers(L.Callback):
    """Set the steps of the detector's quantizers from ``num_batches`` training batches: at the
    start of ``fit`` every uncalibrated quantizer, and with ``every_epoch`` all of them again at
    the start of each later epoch (the ``epoch`` step rule).

    Runs without gradients in the module's current mode, BatchNorm statistics restored after.
    Quantizers restored from a checkpoint are already calibrated and are left alone at the start
    of ``fit``; the epoch of the last calibration travels in the checkpoint, so a resumed run
    recalibrates exactly where the uninterrupted one would have.
    """

    def __init__(self, num_batches: int, every_epoch: bool = False):
        self.num_batches = num_batches
        self.every_epoch = every_epoch
        self.calibrated_epoch = -1  # epoch at whose start the steps were last set

    def state_dict(self) -> dict[str, int]:
        return {"calibrated_epoch": self.calibrated_epoch}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.calibrated_epoch = int(state_dict["calibrated_epoch"])

    def _calibrate(self, trainer: L.Trainer, pl_module: L.LightningModule, quantizers) -> None:
        if not quantizers or self.num_batches <= 0:
            return
        net = pl_module.net

        def forward(images: list[Tensor]) -> None:
            net.features(net.prepare([image.to(pl_module.device) for image in images])[0])

        with batchnorm_statistics_kept(net):
            loader = trainer.datamodule.train_dataloader()
            steps = calibrate(quantizers, forward, loader, self.num_batches)
        log.info(
            "calibrated %d quantizer(s) on %d batches (epoch %d): step %s",
            len(steps),
            self.num_batches,
            trainer.current_epoch,
            ", ".join(f"{s:.4g}" for s in steps),
        )
        self.calibrated_epoch = trainer.current_epoch

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        quantizers = [q for q in feature_quantizers(pl_module.net) if not bool(q.calibrated)]
        self._calibrate(trainer, pl_module, quantizers)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_epoch and trainer.current_epoch != self.calibrated_epoch:
            self._calibrate(trainer, pl_module, feature_quantizers(pl_module.net))
