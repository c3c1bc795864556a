from functools import partial

import lightning as L
import torch

from helpers import TINY_DETECTOR, TINY_SPEC
from qmimic.data import DetectionDataModule, ShapesSource
from qmimic.models import build_detector
from qmimic.modules import DetectorModule
from qmimic.modules.evaluation import metric_targets, scalar_metrics


def test_difficult_objects_become_ignored_crowd_regions():
    target = {
        "boxes": torch.zeros(2, 4),
        "labels": torch.tensor([1, 2]),
        "difficult": torch.tensor([False, True]),
        "image_id": "x",
    }
    (converted,) = metric_targets([target])
    assert converted["iscrowd"].tolist() == [0, 1]
    assert converted["difficult"].tolist() == [False, True]
    assert "image_id" not in converted


def test_scalar_metrics_keeps_only_scalars():
    values = {
        "map": torch.tensor(0.5),
        "map_per_class": torch.tensor([0.1, 0.2]),
        "classes": torch.tensor([1, 2], dtype=torch.int32),
    }
    assert scalar_metrics(values, "val") == {"val/map": 0.5}


def test_fit_and_test_on_tiny_shapes(shapes_cache, tmp_path):
    L.seed_everything(0)
    datamodule = DetectionDataModule(
        ShapesSource(cache_dir=shapes_cache, spec=TINY_SPEC), batch_size=2
    )
    net = build_detector(width=1 / 16, **TINY_DETECTOR)
    module = DetectorModule(net, optimizer=partial(torch.optim.SGD, lr=0.01))
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=datamodule)
    assert "val/map_50" in trainer.callback_metrics
    (metrics,) = trainer.test(module, datamodule=datamodule, verbose=False)
    assert trainer.global_step == 2
    assert 0.0 <= metrics["test/map_50"] <= 1.0
    assert 0.0 <= metrics["test/voc07_map"] <= 1.0


def test_divergence_without_nan_is_recognised():
    from qmimic.modules.detector_module import diverged

    assert diverged([2.8, 2.7], [4.0e4, 3.9e4])
    assert not diverged([2.8, 2.7], [1.2, 1.1])  # a loss that fell
    assert not diverged([], [1.0])  # nothing measured
