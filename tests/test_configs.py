"""Every experiment composes into a config that instantiates (no data is touched)."""

from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import open_dict

from helpers import compose_train_config
from qmimic.cli.train import build_net
from qmimic.conf import experiments, missing_keys
from qmimic.metrics.names import SCALARS, VAL, split_of
from qmimic.quant import feature_quantizers

EXPERIMENTS = list(experiments())
# data=coco leaves the user's files unset and takes the class count from them (as data=voc_folder
# does with its folder).
USER_FILES = ["data.images", "data.train_annotations", "data.test_annotations"]


def test_there_are_experiments():
    stages = {"teacher", "qteacher", "scratch", "quant", "mimic", "qmimic"}
    assert {f"{stage}_shapes" for stage in stages} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_builds(experiment: str, tmp_path: Path):
    overrides = [f"+experiment={experiment}", "model.pretrained=false"]
    if experiment.endswith("_coco"):
        bare = compose_train_config(overrides, tmp_path)
        assert set(USER_FILES) <= set(missing_keys(bare)) and bare.data.num_classes is None
        overrides += [f"{key}=files/{key}" for key in USER_FILES] + ["data.num_classes=4"]
    if experiment.endswith("_voc_folder"):  # the user's folder, classes read from it
        bare = compose_train_config(overrides, tmp_path)
        assert "data.root" in missing_keys(bare) and bare.data.num_classes is None
        overrides += ["data.root=export", "data.num_classes=4"]
    cfg = compose_train_config(overrides, tmp_path)
    assert cfg.task_name == experiment
    assert cfg.model.num_classes == cfg.data.num_classes
    stage_inputs = set(missing_keys(cfg))
    # Only the previous stage's checkpoint may be left for the user to give.
    assert stage_inputs <= {"init_ckpt", "teacher_ckpt"}
    with open_dict(cfg):
        cfg.init_ckpt = None  # weights are not needed to check the architecture
    net, plan = build_net(cfg)
    assert net.feature_channels >= 1
    stage = experiments()[experiment][0]
    # The quantized stages carry one quantizer on the feature map; the qmimic student only
    # where its recipe keeps one on its own map (otherwise Q acts only inside L_m).
    quantized = stage in ("qteacher", "quant") or (
        stage == "qmimic" and cfg.recipe.student.qmimic_quantized_map
    )
    assert (plan is not None) == quantized
    assert len(feature_quantizers(net)) == int(quantized)
    if "teacher_ckpt" not in stage_inputs:
        module = instantiate(cfg.module, net=net)
        assert module.net is net
    trainer = instantiate(
        cfg.trainer,
        callbacks=[instantiate(c) for c in cfg.callbacks.values()],
        logger=[instantiate(c) for c in cfg.logger.values()],
    )
    assert trainer.max_epochs >= 1


def test_default_run_is_the_shapes_teacher(tmp_path: Path):
    cfg = compose_train_config([], tmp_path)
    assert cfg.data.name == "shapes"
    assert cfg.model.width == 0.25


@pytest.mark.parametrize("logger", ["csv", "tensorboard", "wandb"])
def test_logger_choices_build(logger: str, tmp_path: Path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    cfg = compose_train_config([f"logger={logger}"], tmp_path)
    (built,) = [instantiate(c) for c in cfg.logger.values()]
    if logger == "wandb":
        assert built._offline is True  # no credentials here: never tries the network


@pytest.mark.parametrize("extra", [[], ["+search=distill"]])
def test_configs_name_only_metrics_the_modules_log(extra: list[str], tmp_path: Path):
    """``optimized_metric`` and the best checkpoint's ``monitor`` are validation metrics named
    in :mod:`qmimic.metrics.names` (a search never looks at the test split)."""
    cfg = compose_train_config(["+experiment=qmimic_shapes", *extra], tmp_path)
    for logged in (cfg.optimized_metric, cfg.callbacks.best_checkpoint.monitor):
        assert split_of(logged)[0] == VAL and split_of(logged)[1] in SCALARS, logged
