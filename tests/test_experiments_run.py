"""Every experiment (each stage with each recipe) composes and runs ``fit`` + ``test`` with
``fast_dev_run`` in-process.

Real datasets are replaced by tiny trees in their on-disk formats; stage inputs (teacher
checkpoints) are written from the composed teacher configs with untrained weights, in the format
``qmimic.train`` writes, so each experiment runs exactly as its configs say apart from sizes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from data.trees import tiny_coco, tiny_voc, tiny_voc_folder, tiny_wider
from helpers import TINY_SPEC, compose_train_config, save_untrained_checkpoint
from qmimic.cli.train import train
from qmimic.conf import experiments, missing_keys

EXPERIMENTS = list(experiments())

SMALL = [
    "trainer.fast_dev_run=true",
    "data.num_workers=0",
    "data.input.min_size=64",
    "data.input.max_size=96",
    "data.budget.rpn_pre_nms_top_n_train=100",
    "data.budget.rpn_post_nms_top_n_train=30",
    "data.budget.rpn_pre_nms_top_n_test=50",
    "data.budget.rpn_post_nms_top_n_test=10",
    "data.budget.box_batch_size_per_image=8",
    "data.budget.roi_output_size=7",
    "model.pretrained=false",  # no downloads in tests
    "logger=csv",
]


@pytest.fixture(scope="module")
def data_overrides(tmp_path_factory: pytest.TempPathFactory, shapes_cache: Path) -> dict:
    """``data.*`` overrides pointing each dataset at a tiny tree."""
    root = tmp_path_factory.mktemp("datasets")
    coco = tiny_coco(root / "coco")
    return {
        "shapes": [
            f"data.root={shapes_cache}",
            f"data.num_train={TINY_SPEC.num_train}",
            f"data.num_val={TINY_SPEC.num_val}",
            f"data.num_test={TINY_SPEC.num_test}",
            f"data.image_size={TINY_SPEC.image_size}",
        ],
        "faces": [f"data.root={root / 'faces'}", "data.num_train=6", "data.num_val=4"]
        + ["data.image_size=96"],
        "voc": [f"data.root={tiny_voc(root / 'voc')}", "data.batch_size=2"],
        "voc_cpu": [f"data.root={root / 'voc'}", "data.batch_size=2"],  # 2007-train/val
        "voc_folder": [
            f"data.root={tiny_voc_folder(root / 'folder')}",
            "data.batch_size=2",
            "data.num_classes=3",
        ],  # fmt: skip
        "widerface": [f"data.root={tiny_wider(root / 'wider')}", "data.batch_size=3"],
        "coco": [
            f"data.images={coco['images']}",
            f"data.train_annotations={coco['train']}",
            f"data.test_annotations={coco['test']}",
            "data.num_classes=4",  # untrained stage inputs are built before any data is read
            "data.batch_size=2",
        ],
    }


@pytest.fixture(scope="module")
def stage_inputs(tmp_path_factory: pytest.TempPathFactory, data_overrides: dict):
    """``stage_inputs(data)``: overrides for ``init_ckpt`` and ``teacher_ckpt`` of that data."""
    made: dict[str, dict[str, Path]] = {}

    def inputs(data: str) -> dict[str, Path]:
        if data not in made:
            folder = tmp_path_factory.mktemp(f"stages-{data}")
            common = [*SMALL, *data_overrides[data]]
            teacher = save_untrained_checkpoint(f"teacher_{data}", common, folder / "teacher.ckpt")
            qteacher = save_untrained_checkpoint(
                f"qteacher_{data}", common, folder / "qteacher.ckpt"
            )  # fmt: skip
            made[data] = {"teacher": teacher, "qteacher": qteacher}
        return made[data]

    return inputs


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_runs_fast_dev_run(
    experiment: str, data_overrides: dict, stage_inputs, tmp_path: Path
):
    stage, data = experiment.split("_", 1)
    overrides = [f"+experiment={experiment}", *SMALL, *data_overrides[data]]
    probe = compose_train_config(overrides, tmp_path)
    needed = set(missing_keys(probe))
    checkpoints = stage_inputs(data) if needed else {}
    if "init_ckpt" in needed:
        overrides.append(f"init_ckpt={checkpoints['teacher']}")
    if "teacher_ckpt" in needed:  # qmimic mimics the quantized teacher, mimic the float one
        source = "qteacher" if stage == "qmimic" else "teacher"
        overrides.append(f"teacher_ckpt={checkpoints[source]}")
    if "quant" in probe and probe.quant:
        overrides.append("quant.calibration_batches=1")

    cfg = compose_train_config(overrides, tmp_path)
    results = train(cfg)

    written = json.loads((tmp_path / "results.json").read_text())
    assert written["task_name"] == experiment
    assert written["steps"] == 1  # fast_dev_run: one training batch
    headline = "test/voc07_map" if cfg.data.eval_protocol == "voc" else "test/wider_hard"
    assert 0.0 <= results[headline] <= 1.0
    if stage == "qteacher":  # the teacher's mAP before quantization is reported too
        assert f"float/{headline}" in written
    if stage in ("mimic", "qmimic"):
        assert cfg.module.quantize_teacher == (stage == "qmimic")
