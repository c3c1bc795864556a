from pathlib import Path

import pytest
import torch
from trees import VOC_XML, tiny_voc, voc_object, write_voc

import qmimic.data.voc.download as voc_download
from qmimic.data.images import BadSampleError
from qmimic.data.voc.annotations import VOC_CLASSES, VOCDataset, parse_voc_annotation
from qmimic.data.voc.sources import VOCSource
from qmimic.errors import UserError


def xml(name: str, objects: str) -> str:
    return VOC_XML.format(year=2007, name=name, width=40, height=30, objects=objects)


def make_voc(root: Path, entries: dict[str, str], mode: str = "RGB") -> None:
    write_voc(root, 2007, entries, {"test": list(entries)}, size=(40, 30), mode=mode)


def test_parse_boxes_labels_and_difficult(tmp_path: Path):
    path = tmp_path / "a.xml"
    objects = (
        voc_object("dog", (1, 2, 20, 25))
        + voc_object("person", (5, 5, 9, 9), "1")
        + voc_object("car", (3, 4, 8, 9), None)
    )
    path.write_text(xml(name="a", objects=objects))
    target = parse_voc_annotation(path, VOC_CLASSES)
    assert target["boxes"].tolist() == [[1, 2, 20, 25], [5, 5, 9, 9], [3, 4, 8, 9]]
    assert target["labels"].tolist() == [VOC_CLASSES.index(n) + 1 for n in ("dog", "person", "car")]
    # A missing <difficult> tag means "not difficult", as in parts of VOC2012.
    assert target["difficult"].tolist() == [False, True, False]
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64


def test_parse_image_without_objects(tmp_path: Path):
    path = tmp_path / "empty.xml"
    path.write_text(xml(name="empty", objects=""))
    target = parse_voc_annotation(path, VOC_CLASSES)
    assert target["boxes"].shape == (0, 4)
    assert target["labels"].shape == (0,)


@pytest.mark.parametrize(
    "content, message",
    [
        ("<annotation><object>", "cannot parse"),
        (xml(name="x", objects=voc_object("unicorn", (1, 1, 5, 5))), "unknown class 'unicorn'"),
        (xml(name="x", objects=voc_object("dog", (9, 1, 5, 5))), "inverted box"),
        (xml(name="x", objects="<object><name>dog</name></object>"), "no <bndbox>"),
    ],
)
def test_malformed_annotation_names_the_file(tmp_path: Path, content: str, message: str):
    path = tmp_path / "bad.xml"
    path.write_text(content)
    with pytest.raises(BadSampleError, match=message) as info:
        parse_voc_annotation(path, VOC_CLASSES)
    assert str(path) in str(info.value)


def test_dataset_reads_grayscale_and_drops_difficult_for_training(tmp_path: Path):
    make_voc(
        tmp_path,
        {"g1": voc_object("cat", (2, 3, 30, 20)) + voc_object("cat", (4, 4, 8, 8), "1")},
        mode="L",
    )
    eval_set = VOCDataset(tmp_path, 2007, "test", keep_difficult=True)
    image, target = eval_set[0]
    assert image.shape == (3, 30, 40) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert target["image_id"] == "g1"
    assert target["difficult"].tolist() == [False, True]
    _, train_target = VOCDataset(tmp_path, 2007, "test", keep_difficult=False)[0]
    assert train_target["boxes"].tolist() == [[2, 3, 30, 20]]


def test_missing_image_set_names_expected_layout(tmp_path: Path):
    with pytest.raises(UserError, match="VOCdevkit/VOC2007") as info:
        VOCDataset(tmp_path / "nowhere", 2007, "trainval")
    assert "ImageSets/Main/trainval.txt" in str(info.value)


def test_corrupt_image_names_the_file(tmp_path: Path):
    make_voc(tmp_path, {"c1": voc_object("cat", (2, 3, 30, 20))})
    image_path = tmp_path / "VOCdevkit/VOC2007/JPEGImages/c1.jpg"
    image_path.write_bytes(b"not a jpeg")
    with pytest.raises(BadSampleError, match="cannot read image") as info:
        VOCDataset(tmp_path, 2007, "test")[0]
    assert str(image_path) in str(info.value)


# ----------------------------------------------------------------------------- sources, download


def test_voc_classes_are_the_standard_twenty_in_order():
    assert len(VOC_CLASSES) == 20
    assert VOC_CLASSES[0] == "aeroplane" and VOC_CLASSES[14] == "person"
    assert VOC_CLASSES[-1] == "tvmonitor" and list(VOC_CLASSES) == sorted(VOC_CLASSES)


def test_union_of_years_and_test_split(tmp_path: Path):
    tiny_voc(tmp_path)
    splits = {"train": ["2007-trainval", "2012-trainval"], "test": ["2007-test"]}
    source = VOCSource(tmp_path, splits)
    source.prepare()
    train = source.dataset("train", train=True)
    assert len(train) == 3
    image, target = train[2]  # the VOC2012 image, stored grayscale
    assert image.shape == (3, 48, 64) and target["image_id"] == "2008_000001"
    # training leaves the difficult person out, evaluation keeps it flagged
    _, first = train[0]
    assert first["labels"].tolist() == [VOC_CLASSES.index("dog") + 1]
    _, test_target = source.dataset("test", train=False)[1]
    assert test_target["difficult"].tolist() == [False, True, False, False]


def test_any_image_set_including_per_class_lists(tmp_path: Path):
    tiny_voc(tmp_path)
    main = tmp_path / "VOCdevkit/VOC2007/ImageSets/Main"
    (main / "dog_trainval.txt").write_text("000001  1\n000002 -1\n")
    assert VOCDataset(tmp_path, 2007, "dog_trainval").ids == ["000001", "000002"]


def test_boxes_beyond_image_are_clipped_and_degenerate_dropped_in_training(tmp_path: Path):
    objects = voc_object("dog", (5, 6, 80, 40)) + voc_object("cat", (10, 10, 10, 30))
    write_voc(tmp_path, 2007, {"x": objects}, {"test": ["x"]})
    _, target = VOCDataset(tmp_path, 2007, "test")[0]
    assert target["boxes"].tolist() == [[5, 6, 64, 40], [10, 10, 10, 30]]
    assert target["clipped_boxes"] == 1 and target["dropped_boxes"] == 0
    _, train = VOCDataset(tmp_path, 2007, "test", keep_difficult=False, train=True)[0]
    assert train["boxes"].tolist() == [[5, 6, 64, 40]] and train["dropped_boxes"] == 1


def test_missing_image_set_is_reported_before_loading(tmp_path: Path):
    tiny_voc(tmp_path)
    source = VOCSource(tmp_path, {"train": ["2012-train"], "test": ["2007-test"]})
    with pytest.raises(UserError, match="VOC2012/ImageSets/Main/train.txt") as info:
        source.prepare()
    assert "VOCtrainval_11-May-2012.tar" in str(info.value)


def test_download_failure_says_which_archives_to_place(tmp_path: Path, monkeypatch):
    def offline(url, download_root, filename=None, md5=None):
        raise OSError("network unreachable")

    monkeypatch.setattr(voc_download, "download_and_extract_archive", offline)
    splits = {"train": ["2007-trainval", "2012-trainval"], "test": ["2007-test"]}
    source = VOCSource(tmp_path / "voc", splits, download=True)
    with pytest.raises(UserError, match="downloading Pascal VOC .* failed") as info:
        source.prepare()
    message = str(info.value)
    for archive in (
        "VOCtrainval_06-Nov-2007.tar",
        "VOCtest_06-Nov-2007.tar",
        "VOCtrainval_11-May-2012.tar",
    ):
        assert archive in message
    assert f"-C {tmp_path / 'voc'}" in message and "VOCdevkit/VOC2007" in message


def test_download_fetches_only_missing_archives(tmp_path: Path, monkeypatch):
    fetched = []

    def fake(url, download_root, filename=None, md5=None):
        fetched.append(filename)
        write_voc(Path(download_root), 2007, {"a": ""}, {"test": ["a"]})

    monkeypatch.setattr(voc_download, "download_and_extract_archive", fake)
    source = VOCSource(tmp_path, {"test": ["2007-test"]}, download=True)
    source.prepare()
    source.prepare()  # present now: no second download
    assert fetched == ["VOCtest_06-Nov-2007.tar"]


def test_worker_reraised_bad_sample_shows_only_the_message():
    wrapped = BadSampleError(
        "Caught BadSampleError in DataLoader worker process 0.\nOriginal Traceback (most recent "
        'call last):\n  File "x.py", line 1, in f\nqmimic.data.images.BadSampleError: cannot read '
        "image /data/a.jpg: broken"
    )
    assert str(wrapped) == "cannot read image /data/a.jpg: broken"


def test_a_tree_with_voc2007_only_says_how_to_train_on_it(tmp_path: Path):
    write_voc(tmp_path, 2007, {"000001": voc_object("dog", (1, 1, 9, 9))},
              {"trainval": ["000001"], "test": ["000001"]})  # fmt: skip
    source = VOCSource(
        tmp_path, {"train": ["2007-trainval", "2012-trainval"], "test": ["2007-test"]}
    )
    with pytest.raises(UserError) as info:
        source.prepare()
    message = str(info.value)
    assert "VOC2012/ImageSets/Main/trainval.txt" in message  # the missing archive, named
    assert "VOCtrainval_11-May-2012.tar" in message
    assert "pass data.train=[2007-trainval]" in message  # and how to train on 2007 alone
    VOCSource(tmp_path, {"train": ["2007-trainval"], "test": ["2007-test"]}).prepare()
