"""Calibration before fitting and at each epoch start (the ``epoch`` step rule)."""

from functools import partial

import lightning as L
import torch

from helpers import TINY_DETECTOR, TINY_SPEC
from qmimic.data import DetectionDataModule, ShapesSource
from qmimic.models import build_detector
from qmimic.modules import DetectorModule
from qmimic.quant import FeatureQuantizer, insert_quantizers
from qmimic.quant.calibration import CalibrateQuantizers, batchnorm_statistics_kept


def test_calibration_forwards_leave_batchnorm_statistics_alone():
    net = build_detector(width=1 / 16, **TINY_DETECTOR).train()
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    assert before
    with batchnorm_statistics_kept(net), torch.no_grad():
        net.features(net.prepare([torch.rand(3, 96, 96) * 5])[0])
    after = net.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


class RecordSteps(L.Callback):
    def __init__(self):
        self.steps: list[float] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.steps.append(float(pl_module.net.neck.step))


def steps_through_fit(cache, tmp_path, every_epoch: bool) -> list[float]:
    torch.manual_seed(0)
    net = build_detector(width=1 / 16, **TINY_DETECTOR)
    insert_quantizers(net, FeatureQuantizer)
    module = DetectorModule(net, optimizer=partial(torch.optim.SGD, lr=0.05))
    record = RecordSteps()
    trainer = L.Trainer(
        max_epochs=3, limit_train_batches=2, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path,
        callbacks=[CalibrateQuantizers(2, every_epoch=every_epoch), record],
    )  # fmt: skip
    datamodule = DetectionDataModule(ShapesSource(cache_dir=cache, spec=TINY_SPEC), batch_size=2)
    trainer.fit(module, datamodule=datamodule)
    return record.steps


def test_the_epoch_rule_recalibrates_at_each_later_epoch_start(shapes_cache, tmp_path):
    fixed = steps_through_fit(shapes_cache, tmp_path / "fixed", every_epoch=False)
    epoch = steps_through_fit(shapes_cache, tmp_path / "epoch", every_epoch=True)
    assert fixed[0] != 1.0 and len(set(fixed)) == 1  # calibrated once, then frozen
    assert epoch[0] == fixed[0]  # the same calibration before fitting
    assert len(set(epoch)) == 3  # and a new step at the start of epochs 1 and 2


def test_the_callback_state_says_where_it_last_calibrated():
    callback = CalibrateQuantizers(2, every_epoch=True)
    callback.load_state_dict({"calibrated_epoch": 4})
    assert callback.state_dict() == {"calibrated_epoch": 4}
