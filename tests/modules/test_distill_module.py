from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch

from helpers import TINY_DETECTOR, TINY_SPEC
from qmimic.data import DetectionDataModule, ShapesSource
from qmimic.errors import UserError
from qmimic.models import build_detector
from qmimic.modules import DistillModule
from qmimic.modules.mimic import mimic_loss, native_crops, read_regions

TINY_MODEL_CONFIG = {
    "_target_": "qmimic.models.build_detector",
    "width": 0.125,
    **{k: list(v) if isinstance(v, tuple) else v for k, v in TINY_DETECTOR.items()},
}


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory) -> Path:
    """A checkpoint in the format qmimic.train writes (weights + saved config)."""
    torch.manual_seed(0)
    teacher = build_detector(width=0.125, **TINY_DETECTOR)
    path = tmp_path_factory.mktemp("teacher") / "teacher.ckpt"
    state = {f"net.{k}": v for k, v in teacher.state_dict().items()}
    torch.save({"state_dict": state, "qmimic_config": {"model": TINY_MODEL_CONFIG}}, path)
    return path


def make_module(teacher_ckpt: Path, **kwargs) -> DistillModule:
    student = build_detector(width=1 / 16, **TINY_DETECTOR)
    return DistillModule(
        student, str(teacher_ckpt), optimizer=partial(torch.optim.SGD, lr=0.01), **kwargs
    )


def test_mimic_loss_is_zero_for_identical_features_and_positive_otherwise():
    a = torch.rand(5, 8, 7, 7)
    assert mimic_loss(a, a.clone()).item() == 0.0
    assert mimic_loss(a, a + 0.1).item() > 0
    # 1/(2N) * sum of per-region mean squared errors: 0.1^2 / 2 for a constant offset.
    assert mimic_loss(a, a + 0.1).item() == pytest.approx(0.005, rel=1e-4)
    crops = [torch.rand(8, 2, 3), torch.rand(8, 1, 1)]
    assert mimic_loss(crops, [c.clone() for c in crops]).item() == 0.0


def test_regions_read_the_same_boxes_on_both_maps():
    features = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    boxes = [torch.tensor([[0.0, 0.0, 32.0, 32.0]]), torch.tensor([[16.0, 16.0, 64.0, 48.0]])]
    regions = read_regions(features, boxes, stride=16, output_size=2, sampling_ratio=2)
    assert regions.shape == (2, 1, 2, 2)
    crops = native_crops(features, boxes, stride=16)
    assert [tuple(c.shape) for c in crops] == [(1, 2, 2), (1, 2, 3)]
    assert crops[1][0, 0, 0].item() == features[1, 0, 1, 1].item()


def test_teacher_is_frozen_unregistered_and_out_of_checkpoints(teacher_ckpt):
    module = make_module(teacher_ckpt)
    assert not any(p.requires_grad for p in module.teacher.parameters())
    assert not any(k.startswith("teacher") or "_teacher" in k for k in module.state_dict())
    teacher_params = {id(p) for p in module.teacher.parameters()}
    optimizer = module.configure_optimizers()["optimizer"]
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not teacher_params & in_optimizer
    assert module.regressor.in_channels == 16 and module.regressor.out_channels == 32


def test_losses_include_weighted_mimic_and_backprop_only_into_student(teacher_ckpt):
    module = make_module(
        teacher_ckpt, mimic_weight=2.0, quantize_teacher=False, quantize_student=False
    )
    module.train()
    images = [torch.rand(3, 96, 96) for _ in range(2)]
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 70.0]]), "labels": torch.tensor([1])}] * 2
    losses = module.detection_losses(images, targets)
    assert set(losses) == {
        "loss_objectness",
        "loss_rpn_box_reg",
        "loss_classifier",
        "loss_box_reg",
        "loss_mimic",
    }
    assert losses["loss_mimic"].item() > 0
    sum(losses.values()).backward()
    assert module.regressor.weight.grad is not None
    assert all(p.grad is None for p in module.teacher.parameters())


@pytest.mark.parametrize("regions", ["student", "teacher", "gt"])
@pytest.mark.parametrize("region_read", ["roi_align", "native"])
def test_region_choices(teacher_ckpt, regions, region_read):
    module = make_module(teacher_ckpt, regions=regions, region_read=region_read)
    images = [torch.rand(3, 96, 96)]
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 70.0]]), "labels": torch.tensor([1])}]
    assert torch.isfinite(module.detection_losses(images, targets)["loss_mimic"])


def test_teacher_stays_frozen_and_in_eval_mode_through_fit(teacher_ckpt, shapes_cache, tmp_path):
    module = make_module(teacher_ckpt)
    before = {k: v.clone() for k, v in module.teacher.state_dict().items()}
    modes = []

    class RecordTeacherMode(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            modes.append(pl_module.teacher.training)

    datamodule = DetectionDataModule(
        ShapesSource(cache_dir=shapes_cache, spec=TINY_SPEC), batch_size=2
    )
    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=tmp_path,
        callbacks=[RecordTeacherMode()],
    )
    trainer.fit(module, datamodule=datamodule)
    assert modes and not any(modes)
    after = module.teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics included


def test_missing_teacher_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="checkpoint not found"):
        make_module(tmp_path / "missing.ckpt")


def test_student_regions_are_the_heads_own_pooled_regions(teacher_ckpt):
    module = make_module(teacher_ckpt).train()
    images = [torch.rand(3, 96, 96), torch.rand(3, 96, 96)]
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0]]), "labels": torch.tensor([2])}]
    batch, resized = module.net.prepare(images, targets * 2)
    features = module.net.features(batch)
    proposals, _ = module.net.proposals(batch, features, resized)
    _, sampled = module.net.roi_losses_and_regions(batch, features, proposals, resized)

    assert module._can_reuse(sampled.pooled)
    assert sum(len(b) for b in sampled.boxes) == len(sampled.pooled)
    read_again = read_regions(
        features, sampled.boxes, stride=16, output_size=7, sampling_ratio=module.sampling_ratio
    )
    torch.testing.assert_close(sampled.pooled, read_again)
    # A different mimic grid cannot reuse the head's 7x7 regions: they are read afresh.
    assert not make_module(teacher_ckpt, roi_size=5)._can_reuse(sampled.pooled)
    assert (
        make_module(teacher_ckpt, roi_size=5).detection_losses(images, targets * 2)["loss_mimic"]
        > 0
    )
