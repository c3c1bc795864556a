"""Users' own Pascal VOC folders (``data=voc_folder``), as annotation tools export them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from data.trees import tiny_voc_folder, voc_object, write_voc_folder
from helpers import compose_evaluate, compose_train_config, save_untrained_checkpoint
from qmimic.cli.evaluate import evaluate
from qmimic.cli.train import train
from qmimic.data import BadSampleError, DetectionDataModule, VOCFolderSource
from qmimic.errors import UserError
from qmimic.io.checkpoints import load_checkpoint, load_run, save_run
from qmimic.metrics import VOCMeanAP
from qmimic.modules.evaluation import metric_targets


def module(root: Path, **kwargs) -> DetectionDataModule:
    source = VOCFolderSource(root, classes=kwargs.pop("classes", None))
    return DetectionDataModule(source, batch_size=2, hflip=0.0, **kwargs)


def test_classes_are_the_sorted_names_of_the_training_annotations(tmp_path: Path):
    data = module(tiny_voc_folder(tmp_path))
    assert data.class_names == ("helmet", "vest") and data.num_classes == 3
    given = module(tmp_path, classes=["vest", "helmet"])
    assert given.class_names == ("vest", "helmet")  # a given list keeps its order


def test_items_hold_what_the_files_say(tmp_path: Path):
    data = module(tiny_voc_folder(tmp_path))
    data.use_splits(["train", "test"])
    image, target = data.splits["train"][1]  # b, a PNG
    assert image.shape == (3, 48, 64)
    assert target["labels"].tolist() == [1] and target["boxes"].tolist() == [[5, 6, 30, 30]]
    _, c = data.splits["test"][0]  # evaluation keeps the difficult helmet, flagged
    assert c["labels"].tolist() == [2, 1] and c["difficult"].tolist() == [False, True]
    _, c_train = module(tmp_path).source.dataset("val", train=True)[0]
    assert c_train["labels"].tolist() == [2]  # training leaves difficult objects out


@pytest.mark.parametrize(
    ("objects", "without_size", "message"),
    [
        (voc_object("helmet", (5, 5, 20, 20)), True, "has no <size>"),
        (voc_object("glove", (5, 5, 20, 20)), False, "object 1 ('glove'): unknown class 'glove'"),
        (voc_object("helmet", (5, 5, 20, 20)) + voc_object("vest", (30, 5, 20, 20)), False,
         "object 2 ('vest') has an inverted box"),
        (voc_object("vest", (5, 5, 5, 20)), False, "object 1 ('vest') has an empty box"),
    ],
)  # fmt: skip
def test_a_bad_xml_names_the_file_and_the_object(tmp_path, objects, without_size, message):
    root = tiny_voc_folder(tmp_path)
    write_voc_folder(root, {"e": objects}, {"test": ["c", "d", "e"]},
                     without_size=("e",) if without_size else ())  # fmt: skip
    data = module(root)
    data.use_splits(["test"])
    with pytest.raises(BadSampleError, match=re.escape(message)) as info:
        data.splits["test"][2]
    assert str(root / "Annotations" / "e.xml") in str(info.value)
    skipping = module(root, on_bad_sample="skip")
    batches = [skipping.on_after_batch_transfer(b, 0) for b in skipping.test_dataloader()]
    ids = [t["image_id"] for _, targets in batches for t in targets]
    assert ids == ["c", "d"] and len(skipping.report.skipped("test")) == 1


def test_a_missing_image_stops_before_anything_runs(tmp_path: Path):
    root = tiny_voc_folder(tmp_path)
    (root / "JPEGImages" / "d.jpg").unlink()
    with pytest.raises(UserError, match=r"1 file\(s\) listed for the test split do not exist"):
        module(root).use_splits(["train", "val", "test"])


def test_a_folder_without_annotations_says_what_it_expects(tmp_path: Path):
    with pytest.raises(UserError, match="has no Annotations/ folder"):
        module(tmp_path).use_splits(["train"])
    tiny_voc_folder(tmp_path)
    with pytest.raises(UserError, match=r"split list not found: .*holdout.txt"):
        DetectionDataModule(VOCFolderSource(tmp_path, {"train": "train", "test": "holdout"}))\
            .use_splits(["test"])  # fmt: skip


def test_skip_scores_what_remains(tmp_path: Path):
    """Ground truth as predictions scores 1.0 on the images that remain; the left-out image
    counts in neither the score nor the images scored."""
    root = tiny_voc_folder(tmp_path)
    (root / "JPEGImages" / "d.jpg").write_bytes(b"not an image")
    data = module(root, on_bad_sample="skip")
    data.use_splits(["test"])
    metric, scored = VOCMeanAP(use_07_metric=True), 0
    for batch in data.test_dataloader():
        images, targets = data.on_after_batch_transfer(batch, 0)
        truth = metric_targets(targets)
        predictions = [
            {"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))}
            for t in truth
        ]
        metric.update(predictions, truth)
        scored += len(images)
    assert scored == 1 and data.report.skipped("test")[0].startswith("cannot read image")
    assert float(metric.compute()["map"]) == pytest.approx(1.0)


def test_every_stage_trains_on_it_and_keeps_its_class_names(tmp_path: Path):
    root = tiny_voc_folder(tmp_path / "data")
    overrides = [
        "+experiment=scratch_voc_folder", f"data.root={root}", "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "data.num_workers=0", "data.persistent_workers=false", "data.input.min_size=64",
        "data.input.max_size=96", "model.pretrained=false", "logger=csv",
    ]  # fmt: skip
    results = train(compose_train_config(overrides, tmp_path / "run"))
    assert results["test/images"] == 2
    checkpoint = load_checkpoint(next((tmp_path / "run").rglob("*.ckpt")))
    assert checkpoint["qmimic_class_names"] == ["helmet", "vest"]
    assert checkpoint["qmimic_config"]["data"]["classes"] == ["helmet", "vest"]
    run = load_run(next((tmp_path / "run").rglob("*.ckpt")))
    assert run.class_names == ("helmet", "vest") and run.num_classes == 3


def test_evaluation_reads_only_the_test_list_and_the_checkpoints_classes(tmp_path: Path):
    root = tiny_voc_folder(tmp_path / "data")
    overrides = [
        "+experiment=scratch_voc_folder",
        f"data.root={root}",
        "data.num_classes=3",
        "data.input.min_size=64",
        "data.input.max_size=96",
        "model.pretrained=false",
    ]
    ckpt = save_untrained_checkpoint("scratch_voc_folder", overrides[1:], tmp_path / "s.ckpt")
    run = load_run(ckpt)
    assert run.class_names is None  # nothing is read from disk to name them
    save_run(ckpt, run.detector, run.config, ("helmet", "vest"))  # as qmimic.train stores them
    (root / "ImageSets/Main/train.txt").unlink()  # the classes cannot be found again
    cfg = compose_evaluate([f"ckpt={ckpt}", "data=voc_folder", f"data.root={root}",
                            "data.num_workers=0", "data.persistent_workers=false"],
                           tmp_path / "eval")  # fmt: skip
    results = evaluate(cfg)
    assert results["test/images"] == 2 and 0 <= results["test/voc07_map"] <= 1
