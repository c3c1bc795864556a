"""Every data config composes, defines what the model configs read, and builds its DataModule
without touching any data."""

from pathlib import Path

import pytest
from hydra.utils import instantiate

from helpers import compose_train_config
from qmimic.conf import options
from qmimic.data import DetectionDataModule

DATA = options("data")
PROTOCOLS = {"voc": "voc", "shapes": "voc", "widerface": "wider", "faces": "wider", "coco": "voc",
             "voc_cpu": "voc", "voc_folder": "voc"}  # fmt: skip
# Where each dataset lives: data.root, except for COCO files.
LOCATIONS = {
    "coco": ["images={d}", "train_annotations={d}/train.json", "test_annotations={d}/t.json"]
}
CLASSES_FROM_FILES = {"coco", "voc_folder"}  # their num_classes is null until the files are read


def test_every_dataset_has_a_config():
    assert set(PROTOCOLS) <= set(DATA)


@pytest.mark.parametrize("data", DATA)
def test_data_config_builds(data: str, tmp_path: Path):
    location = [f"data.{o.format(d=tmp_path)}" for o in LOCATIONS.get(data, ["root={d}"])]
    cfg = compose_train_config([f"data={data}", *location], tmp_path)
    assert cfg.data.eval_protocol == PROTOCOLS.get(data, cfg.data.eval_protocol)
    assert cfg.model.min_size == cfg.data.input.min_size
    for key in (
        "rpn_pre_nms_top_n_train",
        "box_batch_size_per_image",
        "roi_output_size",
        "roi_sampling_ratio",
    ):
        assert key in cfg.data.budget
    for key in ("batch_size", "num_workers", "hflip", "on_bad_sample"):
        assert key in cfg.data
    module = instantiate(cfg.data.datamodule)
    assert isinstance(module, DetectionDataModule)
    if cfg.data.num_classes is None:  # the files' classes decide, once they are read
        assert data in CLASSES_FROM_FILES
    else:
        assert module.num_classes == cfg.data.num_classes
    assert module.on_bad_sample == cfg.data.on_bad_sample


def test_multi_scale_training_through_min_size(tmp_path: Path):
    cfg = compose_train_config(["data=voc", "data.input.min_size=[480,576,688]"], tmp_path)
    net = instantiate(cfg.model)
    assert tuple(net.transform.min_size) == (480, 576, 688)
