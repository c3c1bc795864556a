"""COCO-format data (``data=coco``): what real exports contain, and bad files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from data.trees import tiny_coco
from qmimic.data import CocoSource, DetectionDataModule
from qmimic.data.images import BadSampleError
from qmimic.errors import UserError


@pytest.fixture
def coco(tmp_path: Path) -> dict[str, Path]:
    return tiny_coco(tmp_path)


def source(paths: dict[str, Path], **splits: Path) -> CocoSource:
    annotations = {"train": paths["train"], "val": paths["test"], "test": paths["test"]}
    return CocoSource(paths["images"], {**annotations, **splits})


def test_classes_follow_the_files_category_order(coco):
    assert source(coco).class_names == ("dog", "cat", "bird")


def test_training_targets_drop_crowd_and_zero_area_and_clip(coco):
    train = source(coco).dataset("train", train=True)
    assert len(train) == 4  # the image without annotations included
    _, first = train[0]
    assert first["labels"].tolist() == [1]  # the crowd region (cat, id 3) left out
    assert first["boxes"].tolist() == [[5.0, 6.0, 35.0, 36.0]]  # [x, y, w, h] -> xyxy
    assert first["image_id"] == "a/one"
    _, second = train[1]
    assert second["labels"].tolist() == [2]  # the zero-width bird dropped
    assert second["boxes"].tolist() == [[50.0, 30.0, 64.0, 48.0]]  # clipped to 64 x 48
    assert second["dropped_boxes"] == 1 and second["clipped_boxes"] == 1
    image, empty = train[3]
    assert image.shape == (3, 48, 64) and empty["boxes"].shape == (0, 4)


def test_evaluation_targets_keep_crowd_as_ignored_regions(coco):
    test = source(coco).dataset("test", train=False)
    _, target = test[1]
    assert target["labels"].tolist() == [3, 2]  # bird (id 90) -> 3, cat (id 3) -> 2
    assert target["difficult"].tolist() == [False, True]
    zero = source(coco).dataset("train", train=False)[1][1]
    assert zero["boxes"].shape == (2, 4)  # evaluation keeps the zero-width box


def test_datamodule_serves_batches(coco):
    datamodule = DetectionDataModule(source(coco), batch_size=2, hflip=0.5)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert datamodule.num_classes == 4
    images, targets = next(iter(datamodule.train_dataloader()))
    assert len(images) == 2 and all(t["boxes"].dtype == torch.float32 for t in targets)


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda d: d.pop("images"), 'no "images" list'),
        (lambda d: d["categories"][0].pop("name"), 'categories[0] has no "name"'),
        (lambda d: d["annotations"][0].pop("category_id"), 'annotations[0] has no "category_id"'),
        (lambda d: d["categories"].append({"id": 17, "name": "x"}), "two categories share an id"),
    ],
)
def test_malformed_file_is_one_clear_error(coco, change, expected):
    data = json.loads(coco["train"].read_text())
    change(data)
    coco["train"].write_text(json.dumps(data))
    with pytest.raises(UserError, match=re.escape(expected)) as error:
        source(coco).prepare()
    assert str(coco["train"]) in str(error.value)


def test_unparsable_and_missing_files(coco, tmp_path):
    coco["train"].write_text('{"images": [')
    with pytest.raises(UserError, match="cannot parse COCO annotation file"):
        source(coco).prepare()
    with pytest.raises(UserError, match="COCO annotation file not found"):
        source(coco, train=tmp_path / "nope.json").prepare()
    with pytest.raises(UserError, match="COCO images folder not found"):
        CocoSource(tmp_path / "no_images", {"test": coco["test"]}).prepare()


def test_splits_with_different_categories_are_refused(coco):
    data = json.loads(coco["test"].read_text())
    data["categories"] = data["categories"][::-1]
    coco["test"].write_text(json.dumps(data))
    with pytest.raises(UserError, match="differ from those of"):
        source(coco).prepare()


def test_bad_annotation_names_the_image_and_file(coco):
    data = json.loads(coco["train"].read_text())
    data["annotations"][0]["bbox"] = [5, 6, -3, 30]
    data["annotations"][4]["category_id"] = 5
    coco["train"].write_text(json.dumps(data))
    train = source(coco).dataset("train", train=True)
    with pytest.raises(BadSampleError, match="negative width or height") as error:
        train[0]
    assert "a/one.jpg" in str(error.value) and str(coco["train"]) in str(error.value)
    with pytest.raises(BadSampleError, match="category_id 5 is not in its categories"):
        train[2]


def test_the_worked_example_is_the_shapes_set_in_coco_json(shapes_cache, tmp_path):
    from helpers import TINY_SPEC
    from qmimic.cli.coco_example import write_example
    from qmimic.data import SHAPES_CLASSES, VOCDataset, ensure_shapes

    files = write_example(tmp_path / "coco", TINY_SPEC, shapes_cache)
    assert [f.name for f in files] == ["train.json", "val.json", "test.json"]
    paths = {"images": tmp_path / "coco" / "images", "train": files[0], "test": files[2]}
    coco = source(paths)
    assert coco.class_names == SHAPES_CLASSES
    voc = VOCDataset(ensure_shapes(shapes_cache, TINY_SPEC), 2007, "test", SHAPES_CLASSES)
    test = coco.dataset("test", train=False)
    assert len(test) == len(voc) == TINY_SPEC.num_test
    for index in range(len(voc)):
        image, target = test[index]
        voc_image, voc_target = voc[index]
        assert torch.equal(image, voc_image)
        assert torch.equal(target["labels"], voc_target["labels"])
        assert torch.equal(target["difficult"], voc_target["difficult"])  # as crowd regions
        # VOC's 1-based inclusive pixel indices, as continuous coordinates
        shifted = voc_target["boxes"] - torch.tensor([1.0, 1.0, 0.0, 0.0])
        assert torch.equal(target["boxes"], shifted)
