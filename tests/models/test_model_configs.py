"""Every ``model`` config composes, builds, and runs fit + test in-process (fast_dev_run)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from helpers import compose_train_config, tiny_overrides
from qmimic.cli.train import build_net, train
from qmimic.conf import options

MODELS = options("model")


def test_every_combination_has_a_config():
    assert set(MODELS) >= {
        f"{arch}_{framework}"
        for arch in ("resnet18", "vgg16")
        for framework in ("faster_rcnn", "rfcn")
    }


@pytest.mark.parametrize("data", ["shapes", "voc"])
@pytest.mark.parametrize("model", MODELS)
def test_model_config_composes_and_builds(model: str, data: str, tmp_path: Path):
    cfg = compose_train_config([f"model={model}", f"data={data}", "model.width=0.0625"], tmp_path)
    assert f"{cfg.model.arch}_{cfg.model.framework}" == model
    assert cfg.model.pretrained is False
    net, _ = build_net(cfg)
    assert net.transform.min_size[-1] == cfg.data.input.min_size
    assert net.eval().rpn.post_nms_top_n() == cfg.data.budget.rpn_post_nms_top_n_test


@pytest.mark.parametrize("model", MODELS)
def test_fast_dev_run_trains_and_tests(
    model: str, shapes_cache: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    overrides = [f"model={model}", "model.width=0.0625", "trainer.fast_dev_run=true"]
    cfg = compose_train_config([*tiny_overrides(shapes_cache, tmp_path), *overrides], tmp_path)
    with caplog.at_level(logging.INFO, logger="qmimic"):
        train(cfg)  # in-process: the command line itself is covered by tests/test_train_cli.py
    assert "GFLOPs=" in caplog.text
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["parameters"] > 0 and results["gflops"] > 0
    assert results["input_size"] == [96, 96]
    assert 0.0 <= results["test/map_50"] <= 1.0
