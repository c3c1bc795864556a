"""ONNX export: the graph reproduces PyTorch, quantizers appear as ops, int8 export runs."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import onnx
import pytest
import torch
from omegaconf import OmegaConf
from torchvision.ops import PSRoIAlign

from helpers import (
    TINY_DETECTOR,
    in_fresh_process,
    run_cli,
    save_untrained_checkpoint,
    tiny_overrides,
)
from qmimic.cli.export import export, output_paths
from qmimic.conf import load_config
from qmimic.data.synthetic.shapes import SHAPES_CLASSES
from qmimic.deploy import (
    Agreement,
    ExportMismatchError,
    PSRoIAlignByRoIAlign,
    check_against,
    compare_detections,
    export_onnx,
    random_images,
)
from qmimic.deploy.runtime import CLASS_NAMES, OnnxDetector, metadata_for, write_metadata
from qmimic.errors import UserError
from qmimic.models import TwoStageDetector, build_detector
from qmimic.quant import FeatureQuantizer, feature_quantizers, insert_quantizers

ROUNDING_OPS = {"Div", "Sub", "Ceil", "Clip", "Mul"}


def tiny_detector(framework: str = "faster_rcnn") -> TwoStageDetector:
    torch.manual_seed(0)
    return build_detector(framework=framework, width=1 / 16, **TINY_DETECTOR).eval()


def exported(detector: TwoStageDetector, path: Path) -> OnnxDetector:
    export_onnx(detector, path, torch.rand(3, 96, 96))
    return OnnxDetector(path, threads=1)


def check_images() -> list[torch.Tensor]:
    """Square and 3/4-high images at the input size, and a landscape one the graph must resize."""
    return [*random_images((96, 96), 2), torch.rand(3, 64, 120)]


def nodes(path: Path) -> list[onnx.NodeProto]:
    return list(onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("framework", ["faster_rcnn", "rfcn"])
def test_onnx_model_reproduces_pytorch_detections(framework: str, tmp_path: Path):
    detector = tiny_detector(framework)
    model = exported(detector, tmp_path / "model.onnx")
    agreement = check_against(detector, model, check_images(), top_k=10)
    # a random detector scores every class near 1/7, above the 0.05 threshold: the 10 top
    # detections of each image are compared both ways, so the check compares real detections
    assert agreement.images == 3 and agreement.compared == 3 * 2 * 10
    assert agreement.passed, agreement.summary()
    assert agreement.max_score_diff <= 1e-4 and agreement.max_box_diff <= 1e-3
    image = check_images()[2]
    with torch.no_grad():
        expected = detector.predict([image])[0]
    found = model.predict(image)
    assert found["labels"].dtype == torch.int64 and found["boxes"].shape[1] == 4
    torch.testing.assert_close(found["boxes"][:5], expected["boxes"][:5], rtol=1e-3, atol=1e-3)


def openvino_against_pytorch(folder: Path) -> dict:
    """Export a tiny detector into ``folder``, run it with OpenVINO, compare with PyTorch (in a
    fresh process: see ``helpers.in_fresh_process``)."""
    detector = tiny_detector()
    exported(detector, folder / "model.onnx")
    names = tuple(f"class{i}" for i in range(1, 7))
    write_metadata(folder / "model.onnx", metadata_for(names, (96, 96), "x.ckpt", "float32"))
    model = OnnxDetector(folder / "model.onnx", threads=1, runtime="openvino")
    agreement = check_against(detector, model, check_images(), top_k=10)
    found = model.predict(check_images()[2])
    return {
        "agreement": agreement, "labels": found["labels"].dtype,
        "box_columns": found["boxes"].shape[1], "class_names": model.class_names,
        "input_size": model.input_size, "names": names,
    }  # fmt: skip


def test_openvino_runs_the_exported_file_as_pytorch_does(tmp_path: Path):
    result = in_fresh_process(openvino_against_pytorch, tmp_path)
    agreement = result["agreement"]
    assert agreement.compared == 3 * 2 * 10 and agreement.passed, agreement.summary()
    assert agreement.max_score_diff <= 1e-4 and agreement.max_box_diff <= 1e-3
    assert result["labels"] == torch.int64 and result["box_columns"] == 4
    assert result["class_names"] == result["names"] and result["input_size"] == (96, 96)


def test_unknown_runtime_is_a_user_error(tmp_path: Path):
    exported(tiny_detector(), tmp_path / "model.onnx")
    with pytest.raises(UserError, match="runtime=tensorrt is not supported; use one of"):
        OnnxDetector(tmp_path / "model.onnx", runtime="tensorrt")


def graph_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Every node of ``graph``, those of its subgraphs (``If`` branches) included."""
    found = []
    for node in graph.node:
        found.append(node)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                found += graph_nodes(attribute.g)
    return found


def test_every_nms_in_the_graph_stops_at_its_budget(tmp_path: Path):
    detector = tiny_detector()
    exported(detector, tmp_path / "model.onnx")
    every_node = graph_nodes(onnx.load(str(tmp_path / "model.onnx")).graph)
    constants = {
        node.output[0]: int(onnx.numpy_helper.to_array(node.attribute[0].t).reshape(-1)[0])
        for node in every_node
        if node.op_type == "Constant" and node.attribute[0].type == onnx.AttributeProto.TENSOR
        and onnx.numpy_helper.to_array(node.attribute[0].t).size == 1
    }  # fmt: skip
    bounds = [constants[n.input[2]] for n in every_node if n.op_type == "NonMaxSuppression"]
    # the RPN's NMS stops at its post-NMS budget, the region head's at the detection budget
    budgets = [detector.rpn.post_nms_top_n(), detector.roi_heads.detections_per_img]
    assert sorted(bounds) == sorted(budgets) and 2**63 - 1 not in budgets


def test_position_sensitive_pooling_from_roi_align_is_exact():
    features = torch.randn(2, 3 * 49, 10, 12)
    boxes = [torch.tensor([[3.0, 5.0, 150.0, 100.0], [-5.0, 10.0, 250.0, 220.0]])] * 2
    for sampling_ratio in (1, 2, -1):
        pool = PSRoIAlign(7, spatial_scale=1 / 16, sampling_ratio=sampling_ratio)
        expected = pool(features, boxes)
        torch.testing.assert_close(PSRoIAlignByRoIAlign(pool)(features, boxes), expected)


def test_comparison_catches_differences_but_not_near_ties():
    reference = {
        "boxes": torch.tensor([[10.0, 10.0, 50.0, 60.0], [0.0, 5.0, 20.0, 30.0]]),
        "scores": torch.tensor([0.90, 0.89999]),
        "labels": torch.tensor([1, 2]),
    }
    swapped = {k: v.flip(0) for k, v in reference.items()}  # near-tie in the other order
    assert compare_detections(reference, swapped).passed
    for key, change in [("scores", 1e-3), ("boxes", 0.5)]:
        changed = {**reference, key: reference[key] + change}
        assert compare_detections(reference, changed).unmatched > 0
    relabelled = {**reference, "labels": torch.tensor([1, 3])}
    assert compare_detections(reference, relabelled).unmatched == 2  # one missing each way


def test_feature_quantizers_are_rounding_ops_in_the_graph(tmp_path: Path):
    detector = tiny_detector()
    insert_quantizers(detector, FeatureQuantizer, patterns=["trunk.layer2"])
    quantizers = feature_quantizers(detector)
    for q in quantizers:
        q.start_calibration()
    with torch.no_grad():
        detector.features(detector.prepare([torch.rand(3, 96, 96)])[0])
    for q in quantizers:
        q.finish_calibration()
    model = exported(detector, tmp_path / "quantized.onnx")
    graph = nodes(tmp_path / "quantized.onnx")
    for scope in ("/neck/", "/trunk/layer2/quantizer/"):
        assert {n.op_type for n in graph if n.name.startswith(scope)} >= ROUNDING_OPS, scope
    assert check_against(detector, model, check_images()).passed
    exported(tiny_detector(), tmp_path / "float.onnx")
    assert not any(n.name.startswith("/neck/") for n in nodes(tmp_path / "float.onnx"))


def test_export_command_writes_float_and_int8_models(shapes_cache: Path, tmp_path: Path):
    overrides = tiny_overrides(shapes_cache, tmp_path / "logs")
    ckpt = save_untrained_checkpoint("scratch_shapes", overrides, tmp_path / "tiny.ckpt")
    output = tmp_path / "export" / "model.onnx"
    result = run_cli(
        "qmimic.export",
        f"ckpt={ckpt}",
        f"output={output}",
        "quantize=int8",
        "calibration_images=4",
        "threads=1",
        f"paths.log_dir={tmp_path / 'logs'}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "onnxruntime vs PyTorch: 4 images, 80 top detections compared, 0 unmatched" in (
        result.stdout
    )
    int8_path = output.with_suffix(".int8.onnx")
    assert sorted(p.name for p in output.parent.iterdir()) == ["model.int8.onnx", "model.onnx"]
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in nodes(int8_path)}
    metadata = {p.key: p.value for p in onnx.load(str(int8_path)).metadata_props}
    assert json.loads(metadata[CLASS_NAMES]) == list(SHAPES_CLASSES)
    quantized = OnnxDetector(int8_path, threads=1)
    found = quantized.predict(torch.rand(3, 96, 96))
    count = len(found["scores"])
    assert count > 0 and found["boxes"].shape == (count, 4) and found["labels"].shape == (count,)
    assert quantized.class_names == SHAPES_CLASSES and quantized.input_size == (96, 96)


def test_export_never_replaces_an_existing_file(tmp_path: Path):
    existing = tmp_path / "model.int8.onnx"
    existing.write_bytes(b"keep me")
    cfg = OmegaConf.create({"output": str(tmp_path / "model.onnx"), "quantize": "int8"})
    with pytest.raises(UserError, match=re.escape(f"{existing} already exists")):
        output_paths(cfg)
    assert existing.read_bytes() == b"keep me"
    cfg.quantize = None
    assert output_paths(cfg) == (tmp_path / "model.onnx", None)


def test_a_failed_check_leaves_nothing_behind(
    shapes_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    overrides = tiny_overrides(shapes_cache, tmp_path / "logs")
    ckpt = save_untrained_checkpoint("scratch_shapes", overrides, tmp_path / "tiny.ckpt")
    output = tmp_path / "out" / "model.onnx"
    cfg = load_config(
        "export", [f"ckpt={ckpt}", f"output={output}", "verify.split=random", "threads=1"]
    )
    monkeypatch.setattr(
        "qmimic.cli.export.check_against", lambda *args, **kwargs: Agreement(1, 20, 3, 0.1, 0.0)
    )
    with pytest.raises(ExportMismatchError, match="differs from PyTorch on 3 of 20 top detections"):
        export(cfg)
    assert list(output.parent.iterdir()) == []


@pytest.mark.slow
def test_int8_is_faster_than_float_on_the_demo_teacher(tmp_path: Path):
    """Median latency per 192 px image, one thread, width-1/4 teacher: int8 below float32."""
    from qmimic.deploy import quantize_int8

    torch.manual_seed(0)
    detector = build_detector(
        width=0.25, num_classes=7, min_size=192, max_size=192, anchor_sizes=(16, 32, 64, 128),
        rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100, roi_output_size=7,
        roi_sampling_ratio=1,
    ).eval()  # fmt: skip
    export_onnx(detector, tmp_path / "model.onnx", torch.rand(3, 192, 192))
    quantize_int8(tmp_path / "model.onnx", tmp_path / "int8.onnx", random_images((192, 192), 16))
    image = torch.rand(3, 192, 192)

    def median_ms(model: OnnxDetector) -> float:
        for _ in range(5):
            model.predict(image)
        times = []
        for _ in range(40):
            start = time.perf_counter()
            model.predict(image)
            times.append(time.perf_counter() - start)
        return 1000 * sorted(times)[len(times) // 2]

    float_ms = median_ms(OnnxDetector(tmp_path / "model.onnx", threads=1))
    int8_ms = median_ms(OnnxDetector(tmp_path / "int8.onnx", threads=1))
    print(f"float32 {float_ms:.2f} ms, int8 {int8_ms:.2f} ms per image")
    assert int8_ms < float_ms
