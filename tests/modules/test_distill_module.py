"""The distillation module: the mimic loss as the paper writes it, the teacher handed in and
frozen, and the match rate it reports."""

from functools import partial
from pathlib import Path

import lightning as L
import pytest
import torch

from helpers import TINY_DETECTOR, TINY_SPEC
from qmimic.data import DetectionDataModule, ShapesSource
from qmimic.errors import UserError
from qmimic.io.checkpoints import load_run, quantization_plan, save_run
from qmimic.metrics.mimic_agreement import MimicAgreement
from qmimic.models import TwoStageDetector, build_detector
from qmimic.modules import DistillModule
from qmimic.modules.mimic import mimic_loss, native_crops, read_regions
from qmimic.quant import FeatureQuantizer, insert_quantizers
from qmimic.quant.calibration import calibrate

TINY_MODEL_CONFIG = {
    "_target_": "qmimic.models.build_detector",
    "width": 0.125,
    **{k: list(v) if isinstance(v, tuple) else v for k, v in TINY_DETECTOR.items()},
}
LEVELS = 8
# A quantized teacher's ``quant`` section, as qmimic.train saves it.
QUANT_CONFIG = {
    "_target_": "qmimic.quant.QuantizationPlan",
    "calibration_batches": 2,
    "quantizer": {
        "_target_": "qmimic.quant.FeatureQuantizer",
        "_partial_": True,
        "num_levels": LEVELS,
        "gradient": "clipped",
    },
}
IMAGES = [torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(i)) for i in range(2)]
TARGETS = [{"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0]]), "labels": torch.tensor([2])}] * 2


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory) -> Path:
    """A float teacher in the checkpoint format qmimic.train writes (weights + saved config)."""
    torch.manual_seed(0)
    teacher = build_detector(width=0.125, **TINY_DETECTOR)
    path = tmp_path_factory.mktemp("teacher") / "teacher.ckpt"
    return save_run(path, teacher, {"model": TINY_MODEL_CONFIG})


@pytest.fixture(scope="module")
def qteacher_ckpt(tmp_path_factory) -> Path:
    """A quantized teacher whose quantizer is calibrated on images (clipped gradient, 8 levels),
    saved with its ``quant`` section as stage 2 saves it."""
    torch.manual_seed(0)
    teacher = build_detector(width=0.125, **TINY_DETECTOR).eval()
    quantization_plan(QUANT_CONFIG).apply(teacher)
    images = [torch.rand(3, 96, 96) for _ in range(4)]
    calibrate([teacher.neck], lambda x: teacher.features(teacher.prepare(x)[0]), [(images, 0)], 1)
    assert bool(teacher.neck.calibrated)
    path = tmp_path_factory.mktemp("qteacher") / "qteacher.ckpt"
    return save_run(path, teacher, {"model": TINY_MODEL_CONFIG, "quant": QUANT_CONFIG})


def make_module(ckpt: Path, **kwargs) -> DistillModule:
    """A 1/16 student handed the teacher read from ``ckpt``, as the training command does."""
    torch.manual_seed(1)
    student = build_detector(width=1 / 16, **TINY_DETECTOR)
    teacher = load_run(ckpt).detector
    return DistillModule(student, teacher, optimizer=partial(torch.optim.SGD, lr=0.01), **kwargs)


def teacher_regions(module: DistillModule, images=IMAGES) -> tuple[torch.Tensor, list]:
    """The teacher's float region features at its top proposals, and the boxes."""
    batch, _ = module.net.prepare(images)
    with torch.no_grad():
        raw = module.teacher.raw_features(batch)
        boxes = module._top_teacher_proposals(batch, raw)
    return raw, boxes


def on_grid(values: torch.Tensor, step: float, levels: int | None) -> bool:
    k = values / step
    inside = (k >= 0).all() and (levels is None or (k <= levels - 1 + 1e-5).all())
    return bool(inside) and torch.allclose(k, k.round(), atol=1e-4)


def test_mimic_loss_is_zero_for_identical_features_and_positive_otherwise():
    a = torch.rand(5, 8, 7, 7)
    assert mimic_loss(a, a.clone()).item() == 0.0
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


def test_teacher_is_frozen_unregistered_and_out_of_checkpoints(qteacher_ckpt):
    module = make_module(qteacher_ckpt)
    assert not any(p.requires_grad for p in module.teacher.parameters())
    assert not any(k.startswith("teacher") or "_teacher" in k for k in module.state_dict())
    assert "teacher" not in module.hparams
    teacher_params = {id(p) for p in module.teacher.parameters()}
    optimizer = module.configure_optimizers()["optimizer"]
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not teacher_params & in_optimizer
    assert module.regressor.in_channels == 16 and module.regressor.out_channels == 32


def test_the_loss_quantizer_is_a_frozen_copy_of_the_teachers(qteacher_ckpt):
    module = make_module(qteacher_ckpt)
    teacher_q, loss_q = module.teacher.neck, module.mimic_quantizer
    assert loss_q is not teacher_q
    assert float(loss_q.step) == float(teacher_q.step) != 1.0  # the calibrated step
    assert (loss_q.num_levels, loss_q.gradient) == (LEVELS, "clipped")
    x = torch.rand(1000) * 10 * float(teacher_q.step)
    assert torch.equal(loss_q(x), teacher_q(x))
    loss_q.train()(x)  # training mode never moves the loss's step
    assert float(loss_q.step) == float(teacher_q.step)


def test_every_teacher_target_is_a_level_of_the_teachers_grid(qteacher_ckpt):
    module = make_module(qteacher_ckpt, regions="teacher")
    raw, boxes = teacher_regions(module)
    step = float(module.mimic_quantizer.step)
    targets = module.teacher_targets(raw, boxes)
    assert targets.shape[0] == sum(len(b) for b in boxes) > 0
    assert on_grid(targets, step, LEVELS)
    # ... and they are the regions read, then quantized (not read off a quantized map).
    read = module._read(raw, boxes)
    torch.testing.assert_close(targets, module.mimic_quantizer(read))
    native = make_module(qteacher_ckpt, region_read="native").teacher_targets(raw, boxes)
    assert all(on_grid(crop, step, LEVELS) for crop in native)


def test_quantizing_the_map_first_puts_most_targets_between_levels(qteacher_ckpt):
    """The ``map`` ablation does what its name says: RoIAlign averages neighbouring levels."""
    module = make_module(qteacher_ckpt, regions="teacher", target_quantization="map")
    raw, boxes = teacher_regions(module)
    targets = module.teacher_targets(raw, boxes)
    k = targets / float(module.mimic_quantizer.step)
    off_grid = ((k - k.round()).abs() > 1e-3).float().mean().item()
    assert off_grid > 0.3


def test_qmimic_quantizes_the_student_side_onto_the_same_grid(qteacher_ckpt):
    module = make_module(qteacher_ckpt).train()
    regions = torch.rand(5, 16, 7, 7, requires_grad=True) * 3
    side = module.student_side(regions)
    assert on_grid(side, float(module.mimic_quantizer.step), LEVELS)
    side.sum().backward()  # straight through to the regressor
    assert module.regressor.weight.grad is not None and module.regressor.weight.grad.abs().sum() > 0


def test_plain_mimic_quantizes_nothing(teacher_ckpt):
    module = make_module(teacher_ckpt, quantize_teacher=False, quantize_student=False)
    raw, boxes = teacher_regions(module)
    torch.testing.assert_close(module.teacher_targets(raw, boxes), module._read(raw, boxes))
    regions = torch.rand(5, 16, 7, 7)
    torch.testing.assert_close(module.student_side(regions), module.regressor(regions))


def test_a_float_teacher_cannot_give_a_quantized_loss(teacher_ckpt):
    with pytest.raises(UserError, match="teacher has no feature quantizer"):
        make_module(teacher_ckpt)  # quantize_teacher and quantize_student default to true
    with pytest.raises(UserError, match="teacher has no feature quantizer"):
        make_module(teacher_ckpt, quantize_teacher=False)


def test_mimic_weight_scales_the_mimic_loss_and_nothing_else(qteacher_ckpt):
    losses = {}
    for weight in (1.0, 2.5):
        module = make_module(qteacher_ckpt, mimic_weight=weight, regions="teacher").train()
        torch.manual_seed(3)
        losses[weight] = module.detection_losses(IMAGES, TARGETS)
    assert losses[1.0]["loss_mimic"].item() > 0
    torch.testing.assert_close(losses[2.5]["loss_mimic"], 2.5 * losses[1.0]["loss_mimic"])
    for name in ("loss_objectness", "loss_classifier"):
        torch.testing.assert_close(losses[2.5][name], losses[1.0][name])


def test_mimic_loss_is_the_papers_formula_on_the_grid(qteacher_ckpt):
    """``loss_mimic`` equals ``lambda/(2N) sum_i mean(Q(f_t^i) - Q(r(f_s^i)))^2`` recomputed here
    from the two maps, for the teacher's regions."""
    module = make_module(qteacher_ckpt, mimic_weight=3.0, regions="teacher").train()
    torch.manual_seed(3)
    loss = module.detection_losses(IMAGES, TARGETS)["loss_mimic"]
    batch, _ = module.net.prepare(IMAGES, [dict(t) for t in TARGETS])
    q = module.mimic_quantizer
    with torch.no_grad():
        raw = module.teacher.raw_features(batch)
        boxes = module._top_teacher_proposals(batch, raw)
        student = module.net.features(batch)
        t = q(module._read(raw, boxes))
        s = q(module.regressor(module._read(student, boxes)))
    expected = 3.0 * ((t - s) ** 2).mean(dim=(1, 2, 3)).sum() / (2 * len(t))
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-4, atol=1e-6)


def test_losses_backprop_only_into_the_student(qteacher_ckpt):
    module = make_module(qteacher_ckpt).train()
    losses = module.detection_losses(IMAGES, TARGETS)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier",
                           "loss_box_reg", "loss_mimic"}  # fmt: skip
    sum(losses.values()).backward()
    assert module.regressor.weight.grad is not None
    assert all(p.grad is None for p in module.teacher.parameters())


@pytest.mark.parametrize("regions", ["student", "teacher", "gt"])
@pytest.mark.parametrize("region_read", ["roi_align", "native"])
def test_region_choices(qteacher_ckpt, regions, region_read):
    module = make_module(qteacher_ckpt, regions=regions, region_read=region_read)
    loss = module.detection_losses(IMAGES[:1], TARGETS[:1])["loss_mimic"]
    assert torch.isfinite(loss) and loss > 0


def test_match_rate_and_distance_by_hand():
    metric = MimicAgreement()
    q = FeatureQuantizer(step=1.0)
    teacher = torch.tensor([0.1, 0.9, 2.2, 3.0])
    student = torch.tensor([0.2, 1.6, 2.0, 3.0])
    metric.update(teacher, student, q, 1.0)  # levels 0,1,2,3 vs 0,2,2,3
    values = metric.compute()
    assert values["mimic_match"].item() == pytest.approx(0.75)
    assert values["mimic_distance"].item() == pytest.approx((0.1 + 0.7 + 0.2 + 0.0) / 4)
    metric.update([teacher[:2] * 2], [student[:2] * 2], q, 2.0)  # crops; distance in steps of 2
    assert metric.compute()["mimic_match"].item() == pytest.approx(4 / 6)


def fit(module: DistillModule, cache: Path, tmp_path: Path, epochs: int = 2, callbacks=()):
    datamodule = DetectionDataModule(ShapesSource(cache_dir=cache, spec=TINY_SPEC), batch_size=2)
    trainer = L.Trainer(
        max_epochs=epochs, limit_train_batches=2, limit_val_batches=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path,
        callbacks=list(callbacks), num_sanity_val_steps=0,
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    return trainer


def test_teacher_stays_frozen_and_in_eval_mode_through_fit(qteacher_ckpt, shapes_cache, tmp_path):
    module = make_module(qteacher_ckpt)
    before = {k: v.clone() for k, v in module.teacher.state_dict().items()}
    modes = []

    class RecordTeacherMode(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            modes.append(pl_module.teacher.training)

    trainer = fit(module, shapes_cache, tmp_path, callbacks=[RecordTeacherMode()])
    assert modes and not any(modes)
    after = module.teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics included
    match = trainer.callback_metrics["val/mimic_match"].item()
    distance = trainer.callback_metrics["val/mimic_distance"].item()
    assert 0 <= match <= 1 and distance > 0


def test_plain_mimic_measures_with_a_step_calibrated_on_the_float_teacher(
    teacher_ckpt, shapes_cache, tmp_path
):
    module = make_module(teacher_ckpt, quantize_teacher=False, quantize_student=False,
                         calibration_batches=2)  # fmt: skip
    assert not bool(module.mimic_quantizer.calibrated)
    trainer = fit(module, shapes_cache, tmp_path, epochs=1)
    assert bool(module.mimic_quantizer.calibrated) and float(module.mimic_quantizer.step) != 1.0
    assert 0 <= trainer.callback_metrics["val/mimic_match"].item() <= 1


def test_the_match_rate_is_one_for_a_student_that_copies_the_teacher(qteacher_ckpt):
    """A student whose mapped features equal the teacher's matches every element."""
    module = make_module(qteacher_ckpt).eval()
    raw, boxes = teacher_regions(module)
    module.agreement.update(module._read(raw, boxes), module._read(raw, boxes),
                            module.mimic_quantizer, float(module.mimic_quantizer.step))  # fmt: skip
    assert module.agreement.compute()["mimic_match"].item() == 1.0
    module.agreement.reset()
    module.measure_agreement(IMAGES)  # an untrained student does not
    assert module.agreement.compute()["mimic_match"].item() < 1.0


def test_student_regions_are_the_heads_own_pooled_regions(qteacher_ckpt):
    module = make_module(qteacher_ckpt).train()
    batch, resized = module.net.prepare(IMAGES, [dict(t) for t in TARGETS])
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
    assert not make_module(qteacher_ckpt, roi_size=5)._can_reuse(sampled.pooled)
    other_grid = make_module(qteacher_ckpt, roi_size=5)
    assert other_grid.detection_losses(IMAGES, TARGETS)["loss_mimic"] > 0


def test_a_teacher_of_another_stride_is_refused(qteacher_ckpt):
    student = build_detector(width=1 / 16, **TINY_DETECTOR)
    teacher: TwoStageDetector = load_run(qteacher_ckpt).detector
    teacher.trunk.stride = 32
    with pytest.raises(UserError, match="feature stride 32"):
        DistillModule(student, teacher, optimizer=torch.optim.SGD)


def test_insert_quantizers_reaches_the_loss_through_the_saved_run(qteacher_ckpt):
    """``load_run`` rebuilds the teacher's quantizer from the saved ``quant`` section."""
    teacher = load_run(qteacher_ckpt).detector
    assert isinstance(teacher.neck, FeatureQuantizer) and teacher.neck.num_levels == LEVELS
    fresh = build_detector(width=0.125, **TINY_DETECTOR)
    insert_quantizers(fresh, partial(FeatureQuantizer, num_levels=LEVELS))
    assert set(fresh.state_dict()) == set(teacher.state_dict())
