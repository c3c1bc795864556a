import pytest
import torch

from helpers import TINY_DETECTOR
from qmimic.errors import UserError
from qmimic.models import build_detector
from qmimic.quant import (
    FeatureQuantizer,
    QuantizationPlan,
    QuantizedOutput,
    feature_quantizers,
    insert_quantizers,
    remove_quantizers,
)


def test_values_round_to_nearest_level_with_ties_down():
    q = FeatureQuantizer(step=0.5)
    x = torch.tensor([-1.0, 0.0, 0.24, 0.25, 0.26, 0.74, 0.75, 0.76, 3.1])
    # 0.25 and 0.75 lie half-way between levels: they go to the lower level.
    assert q(x).tolist() == [0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 1.0, 3.0]


def test_values_above_top_level_clip():
    q = FeatureQuantizer(step=1.0, num_levels=4)  # levels 0, 1, 2, 3
    assert q(torch.tensor([2.4, 2.6, 3.4, 100.0])).tolist() == [2.0, 3.0, 3.0, 3.0]


def test_identity_straight_through_gradient():
    q = FeatureQuantizer(step=1.0, num_levels=3)
    x = torch.tensor([-1.0, 0.3, 1.7, 5.0], requires_grad=True)
    q(x).mul(torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert x.grad.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_clipped_straight_through_gradient():
    q = FeatureQuantizer(step=1.0, num_levels=3, gradient="clipped")  # range [0, 2]
    x = torch.tensor([-1.0, 0.3, 1.7, 5.0], requires_grad=True)
    out = q(x)
    assert out.tolist() == [0.0, 0.0, 2.0, 2.0]
    out.mul(torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert x.grad.tolist() == [0.0, 2.0, 3.0, 0.0]


def test_disabled_is_identity():
    q = FeatureQuantizer(step=1.0, enabled=False)
    x = torch.rand(2, 3, 4, 4) * 5
    assert torch.equal(q(x), x)


def test_calibration_sets_step_from_percentile():
    q = FeatureQuantizer(step=1.0, calibration_percentile=100.0, calibration_levels=5)
    q.start_calibration()
    x = torch.linspace(0, 8, 101)
    assert torch.equal(q(x), x)  # passes values through while observing
    step = q.finish_calibration()
    assert step == pytest.approx(2.0)  # the maximum 8 spans 4 steps
    assert bool(q.calibrated) and q(torch.tensor([2.9, 3.1])).tolist() == [2.0, 4.0]


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="step"):
        FeatureQuantizer(step=0)
    with pytest.raises(ValueError, match="gradient"):
        FeatureQuantizer(gradient="sideways")


def test_insert_and_remove_leave_detector_unchanged():
    torch.manual_seed(0)
    detector = build_detector(width=1 / 16, **TINY_DETECTOR).eval()
    before = {k: v.clone() for k, v in detector.state_dict().items()}
    images = [torch.rand(3, 96, 96)]
    with torch.no_grad():
        reference = detector.features(detector.prepare(images)[0])
    placed = insert_quantizers(
        detector, lambda: FeatureQuantizer(step=0.25), patterns=["trunk.layer2"]
    )
    assert placed == ["neck", "trunk.layer2"]
    assert isinstance(detector.trunk.layer2, QuantizedOutput)
    assert len(feature_quantizers(detector)) == 2
    with torch.no_grad():
        quantized = detector.features(detector.prepare(images)[0])
    steps = quantized / 0.25
    assert torch.allclose(steps, steps.round(), atol=1e-4)  # every value on the level grid
    assert remove_quantizers(detector) == 2
    after = detector.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
    with torch.no_grad():
        assert torch.equal(detector.features(detector.prepare(images)[0]), reference)


def test_pattern_that_matches_nothing_is_an_error():
    detector = build_detector(width=1 / 16, **TINY_DETECTOR)
    with pytest.raises(ValueError, match="matches no module"):
        insert_quantizers(detector, FeatureQuantizer, patterns=["trunk.layer9"])


def test_exports_to_onnx(tmp_path):
    onnx = pytest.importorskip("onnx")
    q = FeatureQuantizer(step=0.5, num_levels=8).eval()
    path = tmp_path / "q.onnx"
    torch.onnx.export(q, (torch.rand(1, 4, 8, 8),), str(path), dynamo=False)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    ops = {node.op_type for node in model.graph.node}
    assert "Ceil" in ops
    ort = pytest.importorskip("onnxruntime")
    x = torch.rand(1, 4, 8, 8) * 5
    (out,) = ort.InferenceSession(str(path)).run(None, {model.graph.input[0].name: x.numpy()})
    assert torch.allclose(torch.from_numpy(out), q(x))


def test_momentum_moves_a_calibrated_step_in_training_mode_only():
    q = FeatureQuantizer(step=1.0, calibration_percentile=100.0, calibration_levels=5,
                         momentum=0.5)  # fmt: skip
    x = torch.linspace(0, 8, 101)  # alone it would calibrate a step of 2
    q.train()(x)
    assert float(q.step) == 1.0  # not calibrated yet: nothing to follow from
    q.calibrated.fill_(True)
    q.eval()(x)
    assert float(q.step) == 1.0  # eval mode never moves it
    q.train()(x)
    assert float(q.step) == pytest.approx(1.5)  # 0.5 * 1 + 0.5 * 2
    q(torch.zeros(10))  # an all-zero batch says nothing about the scale
    assert float(q.step) == pytest.approx(1.5)
    q(x)
    assert float(q.step) == pytest.approx(1.75)


def test_frozen_copy_computes_the_same_function_and_never_moves():
    q = FeatureQuantizer(step=0.3, num_levels=5, gradient="clipped", momentum=0.5)
    copy = q.frozen_copy()
    x = torch.rand(200) * 3
    assert torch.equal(copy(x), q(x))
    assert (copy.num_levels, copy.gradient, copy.momentum) == (5, "clipped", None)
    assert bool(copy.calibrated)
    copy.train()(x * 10)
    assert float(copy.step) == pytest.approx(0.3)


def test_plan_step_rules():
    plan = QuantizationPlan(FeatureQuantizer, calibration_batches=2, step_rule="ema", momentum=0.9)
    detector = build_detector(width=1 / 16, **TINY_DETECTOR)
    plan.apply(detector)
    assert detector.neck.momentum == 0.9
    fixed = build_detector(width=1 / 16, **TINY_DETECTOR)
    QuantizationPlan(FeatureQuantizer, calibration_batches=2).apply(fixed)
    assert fixed.neck.momentum is None
    with pytest.raises(UserError, match="step_rule must be one of"):
        QuantizationPlan(FeatureQuantizer, calibration_batches=2, step_rule="sometimes")
    with pytest.raises(UserError, match="calibration_batches"):
        QuantizationPlan(FeatureQuantizer, calibration_batches=0, step_rule="epoch")


def test_a_quantizer_outside_the_trunk_is_refused_as_it_would_never_calibrate():
    detector = build_detector(width=1 / 16, **TINY_DETECTOR)
    with pytest.raises(UserError, match="outside the trunk: calibration runs the feature map"):
        insert_quantizers(detector, FeatureQuantizer, patterns=["roi_heads.*"])


def test_calibration_that_cannot_set_a_step_says_what_to_change():
    q = FeatureQuantizer()
    q.start_calibration()
    q(torch.zeros(2, 4, 4))
    with pytest.raises(UserError, match="calibration_percentile"):
        q.finish_calibration()
    with pytest.raises(UserError, match="calibration_batches"):
        FeatureQuantizer().finish_calibration()
