"""LightningModule that trains one detector: a teacher, or a student from scratch."""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Callable, Iterator

import lightning as L
import torch
from torch import Tensor
from torch.optim import Optimizer

from qmimic.errors import UserError
from qmimic.log import get_logger
from qmimic.metrics.names import HEADLINES, LOSS, TRAIN, key
from qmimic.models.detector import Targets, TwoStageDetector
from qmimic.modules.evaluation import (
    DetectionMetrics,
    metric_targets,
    scalar_metrics,
)

OptimizerFactory = Callable[[Iterator[torch.nn.Parameter]], Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]

LOSS_WINDOW = 20  # training steps averaged at the start and at the end for the divergence check
DIVERGED_RATIO = 10.0  # a final training loss this many times its start is reported as diverged

log = get_logger(__name__)


class NonFiniteLossError(UserError):
    """A training loss became NaN or infinite; the message names the step, the component and
    the usual fixes."""


def diverged(start: list[float], end: list[float], ratio: float = DIVERGED_RATIO) -> bool:
    """Whether the mean training loss of the last steps (``end``) is ``ratio`` times or more
    that of the first steps (``start``): divergence that produced no NaN."""
    return bool(start and end) and statistics.mean(end) >= ratio * statistics.mean(start)


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
        non_finite_steps: training steps with a NaN or infinite loss that are skipped (no
            backward, no update) before the run stops with :class:`NonFiniteLossError`; 0 stops
            at the first. A skipped step's forward pass has still updated BatchNorm statistics.
            Single-process runs only: under DDP every process would have to skip alike.
    """

    # Constructor arguments that are built objects, kept out of the saved hyperparameters.
    passed_in: tuple[str, ...] = ("net", "optimizer", "scheduler")

    def __init__(
        self,
        net: TwoStageDetector,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        eval_protocol: str = "voc",
        metric_backend: str = "faster_coco_eval",
        non_finite_steps: int = 0,
    ):
        super().__init__()
        # Factories and the network stay out of hparams: checkpoints must load with
        # weights_only=True; the full config travels as checkpoint["qmimic_config"].
        self.save_hyperparameters(ignore=list(self.passed_in), logger=False)
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.headlines = HEADLINES[eval_protocol]
        self.val_metrics = DetectionMetrics(eval_protocol, metric_backend)
        self.test_metrics = DetectionMetrics(eval_protocol, metric_backend)
        self.test_results: dict[str, Tensor] = {}
        self.non_finite_steps = non_finite_steps
        self.non_finite_seen = 0
        self.loss_start: list[float] = []
        self.loss_end: deque[float] = deque(maxlen=LOSS_WINDOW)

    def forward(self, images: list[Tensor]) -> Targets:
        return self.net.predict(images)

    def detection_losses(self, images: list[Tensor], targets: list[dict]) -> dict[str, Tensor]:
        """Detection losses of ``self.net``; subclasses add their own terms."""
        return self.net.losses(images, training_targets(targets))

    def training_step(
        self, batch: tuple[list[Tensor], list[dict]], batch_idx: int
    ) -> Tensor | None:
        images, targets = batch
        if not images:  # every sample of the batch was left out (data.on_bad_sample=skip)
            return None
        losses = self.detection_losses(images, targets)
        parts = torch.stack(list(losses.values()))
        loss = parts.sum()
        # One device-to-host copy per step for the guard and the divergence check.
        *values, total = torch.cat([parts.detach(), loss.detach()[None]]).tolist()
        bad = {name: v for name, v in zip(losses, values, strict=True) if not math.isfinite(v)}
        if bad:
            return self._skip_or_stop(bad)
        self._track(total)
        logged = {key(TRAIN, name): value.detach() for name, value in losses.items()}
        self.log_dict(logged, batch_size=len(images))
        self.log(key(TRAIN, LOSS), loss.detach(), prog_bar=True, batch_size=len(images))
        return loss

    def _skip_or_stop(self, bad: dict[str, float]) -> None:
        """Skip this step (returning None skips backward and update), or stop the run; ``bad``
        holds the non-finite loss components."""
        step = self.trainer.global_step
        shown = ", ".join(f"{name}={value}" for name, value in bad.items())
        self.non_finite_seen += 1
        if self.non_finite_seen <= self.non_finite_steps:
            log.warning("step %d: non-finite loss (%s); step skipped", step, shown)
            return None
        # This step's forward has already updated BatchNorm statistics, so buffers count too.
        weights_ok = all(
            bool(torch.isfinite(v).all())
            for v in self.state_dict().values()
            if v.is_floating_point()
        )
        if not weights_ok:  # keep the checkpoint written before; never put these weights on disk
            for callback in self.trainer.checkpoint_callbacks:
                callback.save_on_exception = False
        kept = (
            "checkpoints/interrupted.ckpt gets the weights after the last finite step"
            if weights_ok
            else "the weights are no longer finite, so no checkpoint is written (last.ckpt "
            "stays at the last epoch end)"
        )
        raise NonFiniteLossError(
            f"the training loss became non-finite at step {step} (epoch "
            f"{self.trainer.current_epoch}): {shown}; the run stopped and {kept}. Usual fixes: "
            "a lower module.optimizer.lr, a longer warm-up (module.scheduler.warmup_steps), "
            "or, when distilling, a lower module.mimic_weight; module.non_finite_steps=N skips "
            "up to N such steps instead of stopping"
        )

    def _track(self, loss: float) -> None:
        if len(self.loss_start) < LOSS_WINDOW:
            self.loss_start.append(loss)
        self.loss_end.append(loss)

    def on_train_end(self) -> None:
        if diverged(self.loss_start, list(self.loss_end)):
            log.warning(
                "the training loss rose from %.4g (mean of the first %d steps) to %.4g (the last "
                "%d): the run diverged; lower module.optimizer.lr or lengthen the warm-up",
                statistics.mean(self.loss_start),
                len(self.loss_start),
                statistics.mean(self.loss_end),
                len(self.loss_end),
            )

    def _evaluate(self, batch: tuple[list[Tensor], list[dict]], metrics) -> None:
        images, targets = batch
        if not images:  # every sample of the batch was left out (data.on_bad_sample=skip)
            return
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
        headlines = {key(stage, k): values.pop(key(stage, k)) for k in self.headlines}
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
