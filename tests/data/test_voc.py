from pathlib import Path

import pytest
import torch
from PIL import Image

from qmimic.data.voc import VOC_CLASSES, BadSampleError, VOCDataset, parse_voc_annotation
from qmimic.errors import UserError

XML = """<annotation><filename>{name}.jpg</filename>
<size><width>40</width><height>30</height><depth>3</depth></size>
{objects}</annotation>"""


def obj(name: str, box: tuple, difficult: str | None = "0") -> str:
    tag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    x1, y1, x2, y2 = box
    return (
        f"<object><name>{name}</name><truncated>0</truncated>{tag}<bndbox><xmin>{x1}</xmin>"
        f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
    )


def make_voc(root: Path, entries: dict[str, str], image_set: str = "test", mode: str = "RGB"):
    year = root / "VOCdevkit" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (year / sub).mkdir(parents=True, exist_ok=True)
    for name, objects in entries.items():
        Image.new(mode, (40, 30), 128).save(year / "JPEGImages" / f"{name}.jpg")
        (year / "Annotations" / f"{name}.xml").write_text(XML.format(name=name, objects=objects))
    (year / "ImageSets" / "Main" / f"{image_set}.txt").write_text("\n".join(entries) + "\n")


def test_parse_boxes_labels_and_difficult(tmp_path: Path):
    path = tmp_path / "a.xml"
    objects = (
        obj("dog", (1, 2, 20, 25))
        + obj("person", (5, 5, 9, 9), "1")
        + obj("car", (3, 4, 8, 9), None)
    )
    path.write_text(XML.format(name="a", objects=objects))
    target = parse_voc_annotation(path, VOC_CLASSES)
    assert target["boxes"].tolist() == [[1, 2, 20, 25], [5, 5, 9, 9], [3, 4, 8, 9]]
    assert target["labels"].tolist() == [VOC_CLASSES.index(n) + 1 for n in ("dog", "person", "car")]
    # A missing <difficult> tag means "not difficult", as in parts of VOC2012.
    assert target["difficult"].tolist() == [False, True, False]
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64


def test_parse_image_without_objects(tmp_path: Path):
    path = tmp_path / "empty.xml"
    path.write_text(XML.format(name="empty", objects=""))
    target = parse_voc_annotation(path, VOC_CLASSES)
    assert target["boxes"].shape == (0, 4)
    assert target["labels"].shape == (0,)


@pytest.mark.parametrize(
    "content, message",
    [
        ("<annotation><object>", "cannot parse"),
        (XML.format(name="x", objects=obj("unicorn", (1, 1, 5, 5))), "unknown class 'unicorn'"),
        (XML.format(name="x", objects=obj("dog", (9, 1, 5, 5))), "inverted box"),
        (XML.format(name="x", objects="<object><name>dog</name></object>"), "no <bndbox>"),
    ],
)
def test_malformed_annotation_names_the_file(tmp_path: Path, content: str, message: str):
    path = tmp_path / "bad.xml"
    path.write_text(content)
    with pytest.raises(BadSampleError, match=message) as info:
        parse_voc_annotation(path, VOC_CLASSES)
    assert str(path) in str(info.value)


def test_dataset_reads_grayscale_and_drops_difficult_for_training(tmp_path: Path):
    make_voc(tmp_path, {"g1": obj("cat", (2, 3, 30, 20)) + obj("cat", (4, 4, 8, 8), "1")}, mode="L")
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
    make_voc(tmp_path, {"c1": obj("cat", (2, 3, 30, 20))})
    image_path = tmp_path / "VOCdevkit/VOC2007/JPEGImages/c1.jpg"
    image_path.write_bytes(b"not a jpeg")
    with pytest.raises(BadSampleError, match="cannot read image") as info:
        VOCDataset(tmp_path, 2007, "test")[0]
    assert str(image_path) in str(info.value)
