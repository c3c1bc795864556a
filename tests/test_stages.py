"""The stage graph read from the ``stage`` config group, and experiments as stage x recipe."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from qmimic.conf import experiments, load_config, options
from qmimic.errors import UserError
from qmimic.stages import load_stages, stage_names


def test_the_pipeline_order_and_inputs_come_from_the_stage_configs():
    stages = load_stages("voc")
    assert [s.name for s in stages] == stage_names(controls=True)
    assert stage_names() == ["teacher", "qteacher", "scratch", "quant", "mimic", "qmimic"]
    assert [s.name for s in stages if s.control] == ["ftteacher"]
    needs = {s.name: s.needs for s in stages}
    assert needs["qteacher"] == needs["ftteacher"] == {"init_ckpt": "teacher"}
    assert needs["mimic"] == {"teacher_ckpt": "teacher"}
    assert needs["qmimic"] == {"teacher_ckpt": "qteacher"}
    assert [s.name for s in stages if s.student] == ["scratch", "quant", "mimic", "qmimic"]
    assert {s.experiment for s in stages} == {f"{s}_voc" for s in stage_names(controls=True)}


def test_the_stage_2_control_is_the_quantized_teacher_without_quantization():
    quantized = load_config("train", ["+experiment=qteacher_shapes"])
    control = load_config("train", ["+experiment=ftteacher_shapes"])
    assert OmegaConf.to_container(control.quant) == {}
    assert quantized.quant.feature_map
    for key in ("trainer.max_epochs", "module.optimizer.lr", "module.scheduler.warmup_steps"):
        assert OmegaConf.select(control, key) == OmegaConf.select(quantized, key)


def test_every_stage_and_recipe_pair_is_an_experiment():
    assert set(experiments()) == {
        f"{stage}_{data}" for stage in options("stage") for data in options("recipe")
    }
    assert {"shapes", "voc", "widerface", "faces"} <= set(options("recipe"))


@pytest.mark.parametrize("stage", ["teacher", "qteacher", "qmimic"])
def test_an_experiment_is_its_recipe_then_its_stage(stage: str):
    as_experiment = load_config("train", [f"+experiment={stage}_voc"])
    as_groups = load_config("train", ["+recipe=voc", f"+stage={stage}"])
    assert OmegaConf.to_container(as_experiment) == OmegaConf.to_container(as_groups)


def test_the_recipe_sets_what_each_stage_trains_on_its_data():
    teacher = load_config("train", ["+experiment=teacher_voc"])
    student = load_config("train", ["+experiment=qmimic_widerface"])
    assert (teacher.model.width, teacher.model.pretrained, teacher.data.name) == (1.0, True, "voc")
    assert (student.model.width, student.model.arch, student.data.name) == (
        0.03125,
        "vgg16",
        "widerface",
    )
    assert student.task_name == "qmimic_widerface" and student.module.quantize_teacher


def test_an_unknown_recipe_names_the_known_ones():
    with pytest.raises(UserError, match="no recipe 'nope'; choose one of coco, faces, shapes"):
        load_stages("nope")
