"""Detections on the dashboard: a few fixed validation images with their predicted and
ground-truth boxes, logged to wandb (boxes and class labels the dashboard can filter) or
TensorBoard (boxes drawn into the image); nothing for the CSV logger."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from torch import Tensor
from torchvision.utils import draw_bounding_boxes

from qmimic.drawing import class_name, detection_records, draw, to_pixels
from qmimic.metrics.names import DETECTIONS, VAL, key

KEY = key(VAL, DETECTIONS)


class DetectionImages(L.Callback):
    """Every ``every_n_epochs``-th validation, predict the first ``count`` validation images
    (the same ones each time) and log them with their boxes to each wandb or TensorBoard logger.

    Args:
        count: how many images (0 turns the callback off).
        every_n_epochs: the interval, in validations at an epoch's end.
        min_score: detections below this score are not shown.
    """

    def __init__(self, count: int = 4, every_n_epochs: int = 1, min_score: float = 0.3):
        if count < 0 or every_n_epochs < 1:
            raise ValueError(f"count >= 0 and every_n_epochs >= 1, got {count}, {every_n_epochs}")
        self.count = count
        self.every_n_epochs = every_n_epochs
        self.min_score = min_score
        self._samples: list[tuple[Tensor, dict]] | None = None

    @rank_zero_only
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger | TensorBoardLogger)]
        if not loggers or self.count == 0 or trainer.sanity_checking:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        samples = self._fixed_samples(trainer)
        if not samples:
            return
        images = [image.to(pl_module.device) for image, _ in samples]
        with torch.no_grad():
            predictions = pl_module.net.predict(images)
        names = getattr(trainer.datamodule, "class_names", None)
        shown = [self._confident(p) for p in predictions]
        for logger in loggers:
            if isinstance(logger, WandbLogger):
                _log_wandb(logger, samples, shown, names, trainer.global_step)
            else:
                _log_tensorboard(logger, samples, shown, names, trainer.global_step)

    def _fixed_samples(self, trainer: L.Trainer) -> list[tuple[Tensor, dict]]:
        if self._samples is None:
            loaders = trainer.val_dataloaders
            loader = loaders[0] if isinstance(loaders, list | tuple) else loaders
            dataset = loader.dataset
            self._samples = [dataset[i] for i in range(min(self.count, len(dataset)))]
        return self._samples

    def _confident(self, prediction: dict[str, Tensor]) -> dict[str, Tensor]:
        keep = prediction["scores"] >= self.min_score
        return {k: prediction[k][keep].cpu() for k in ("boxes", "scores", "labels")}


def _wandb_boxes(boxes: Tensor, labels: Tensor, scores: Tensor | None, names) -> dict:
    """wandb's box format: pixel positions, a class id and caption per box."""
    data = []
    for i, (box, label) in enumerate(zip(boxes.tolist(), labels.tolist(), strict=True)):
        record: dict[str, Any] = {
            "position": {"minX": box[0], "minY": box[1], "maxX": box[2], "maxY": box[3]},
            "domain": "pixel",
            "class_id": int(label),
            "box_caption": class_name(int(label), names),
        }
        if scores is not None:
            record["scores"] = {"score": float(scores[i])}
            record["box_caption"] += f" {float(scores[i]):.2f}"
        data.append(record)
    labels_named = {i: class_name(i, names) for i in range(1, len(names or ()) + 1)}
    return {"box_data": data, "class_labels": labels_named}


def _log_wandb(logger: WandbLogger, samples, predictions, names, step: int) -> None:
    pixels, boxes = [], []
    for (image, target), predicted in zip(samples, predictions, strict=True):
        pixels.append(to_pixels(image).permute(1, 2, 0).numpy())  # wandb takes H, W, 3
        boxes.append({
            "predictions": _wandb_boxes(
                predicted["boxes"], predicted["labels"], predicted["scores"], names),
            "ground_truth": _wandb_boxes(target["boxes"], target["labels"], None, names),
        })  # fmt: skip
    captions = [str(target.get("image_id", i)) for i, (_, target) in enumerate(samples)]
    logger.log_image(KEY, pixels, step=step, boxes=boxes, caption=captions)


def _log_tensorboard(logger: TensorBoardLogger, samples, predictions, names, step: int) -> None:
    for i, ((image, target), predicted) in enumerate(zip(samples, predictions, strict=True)):
        drawn = draw(image, detection_records(predicted, names))
        if len(target["boxes"]):  # ground truth in white, thin, labelled "gt: <class>"
            drawn = draw_bounding_boxes(
                drawn,
                target["boxes"],
                labels=[f"gt: {class_name(int(c), names)}" for c in target["labels"]],
                colors="white",
                width=1,
            )
        logger.experiment.add_image(f"{KEY}/{i}", drawn, global_step=step)
