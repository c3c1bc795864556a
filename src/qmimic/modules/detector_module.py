"""LightningModule that trains one detector: a teacher, or a student from scratch."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import lightning as L
import torch
from torch import Tensor
from torch.optim import Optimizer

from qmimic.models.detector import Targets, TwoStageDetector
from qmimic.modules.evaluation import (
    HEADLINES,
    DetectionMetrics,
    metric_targets,
    scalar_metrics,
)

OptimizerFactory = Callable[[Iterator[torch.nn.Parameter]], Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


def training_targets(targets: list[dict]) -> Targets:
    """Only what the detector's losses read (``boxes``, ``labels``)."""
    return [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]


class DetectorModule(L.LightningModule):
    """Detection losses for training; VOC07 mAP and COCO mAP for validation and test.

    Args:
        net: the detector (see :class:`~qmimic.models.detector.TwoStageDetector`).
        optimizer: ``_partial_`` factory taking the parameters.
        scheduler: optional ``_partial_`` factory taking the optimizer and ``total_steps``; it is
            stepped every optimizer step.
        eval_protocol: ``"voc"`` (VOC07 mAP) or ``"wider"`` (WIDER FACE easy/medium/hard AP),
            logged beside torchmetrics' COCO mAP.
        metric_backend: torchmetrics ``MeanAveragePrecision`` backend.
    """

    def __init__(
        self,
        net: TwoStageDetector,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        eval_protocol: str = "voc",
        metric_backend: str = "faster_coco_eval",
    ):
        super().__init__()
        # Factories and the network stay out of hparams: checkpoints must load with
        # weights_only=True; the full config travels as checkpoint["qmimic_config"].
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"], logger=False)
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.headlines = HEADLINES[eval_protocol]
        self.val_metrics = DetectionMetrics(eval_protocol, metric_backend)
        self.test_metrics = DetectionMetrics(eval_protocol, metric_backend)
        self.test_results: dict[str, Tensor] = {}

    def forward(self, images: list[Tensor]) -> Targets:
        return self.net.predict(images)

    def detection_losses(self, images: list[Tensor], targets: list[dict]) -> dict[str, Tensor]:
        """Detection losses of ``self.net``; subclasses add their own terms."""
        return self.net.losses(images, training_targets(targets))

    def training_step(self, batch: tuple[list[Tensor], list[dict]], batch_idx: int) -> Tensor:
        images, targets = batch
        losses = self.detection_losses(images, targets)
        loss = torch.stack(list(losses.values())).sum()
        logged = {f"train/{name}": value.detach() for name, value in losses.items()}
        self.log_dict(logged, batch_size=len(images))
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(images))
        return loss

    def _evaluate(self, batch: tuple[list[Tensor], list[dict]], metrics) -> None:
        images, targets = batch
        predictions = self.net.predict(images)
        metrics.update(predictions, metric_targets(targets))

    def validation_step(self, batch: tuple[list[Tensor], list[dict]], batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics)

    def test_step(self, batch: tuple[list[Tensor], list[dict]], batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics)

    def _log_metrics(self, metrics, stage: str) -> None:
        computed = metrics.compute()
        if stage == "test":  # kept whole (per-class APs included) for reports
            self.test_results = {k: v.detach().cpu() for k, v in computed.items()}
        values = scalar_metrics(computed, stage)
        headlines = {f"{stage}/{k}": values.pop(f"{stage}/{k}") for k in self.headlines}
        # compute() already gathered every process's states, so each process holds the same
        # values: syncing them with max keeps them bit-exact (a mean could move the last bit)
        # and tells Lightning they are whole-split values. A no-op in a single process.
        synced = dict(sync_dist=True, reduce_fx="max")
        self.log_dict(headlines, prog_bar=True, **synced)
        self.log_dict(values, **synced)
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics(self.test_metrics, "test")

    def trainable_parameters(self) -> Iterator[torch.nn.Parameter]:
        """What the optimizer updates; distillation narrows this to the student."""
        return (p for p in self.parameters() if p.requires_grad)

    def configure_optimizers(self) -> dict:
        optimizer = self.optimizer_factory(self.trainable_parameters())
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(
            optimizer, total_steps=int(self.trainer.estimated_stepping_batches)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
