"""Tiny dataset trees in the real on-disk formats (Pascal VOC devkit, WIDER FACE), for tests.

The WIDER FACE ``.mat`` lists are written here directly with ``scipy.io.savemat`` in the official
structure (cell columns of cell columns), independently of the ``faces`` generator.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy.io import savemat

VOC_XML = """<annotation><folder>VOC{year}</folder><filename>{name}.jpg</filename>
<size><width>{width}</width><height>{height}</height><depth>3</depth></size>
{objects}</annotation>"""


def voc_object(name: str, box: tuple, difficult: str | None = "0") -> str:
    """One ``<object>``; ``difficult=None`` leaves the tag out, as parts of VOC2012 do."""
    tag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    x1, y1, x2, y2 = box
    return (
        f"<object><name>{name}</name><pose>Left</pose><truncated>0</truncated>{tag}<bndbox>"
        f"<xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
    )


def write_voc(
    root: Path,
    year: int,
    entries: dict[str, str],
    image_sets: dict[str, list[str]],
    size: tuple[int, int] = (64, 48),
    mode: str = "RGB",
) -> Path:
    """``root/VOCdevkit/VOC<year>`` with one image and annotation per entry (id -> objects)."""
    year_dir = root / "VOCdevkit" / f"VOC{year}"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (year_dir / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(year)
    for name, objects in entries.items():
        pixels = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).convert(mode).save(year_dir / "JPEGImages" / f"{name}.jpg")
        xml = VOC_XML.format(year=year, name=name, width=size[0], height=size[1], objects=objects)
        (year_dir / "Annotations" / f"{name}.xml").write_text(xml)
    for image_set, ids in image_sets.items():
        (year_dir / "ImageSets" / "Main" / f"{image_set}.txt").write_text(
            "".join(f"{i}\n" for i in ids)
        )
    return year_dir


def tiny_voc(root: Path) -> Path:
    """VOC2007 (trainval, its train and val halves, test) and VOC2012 (trainval), a few
    objects each, one grayscale."""
    a = voc_object("dog", (5, 6, 40, 40)) + voc_object("person", (30, 2, 60, 46), "1")
    b = voc_object("car", (2, 10, 30, 30), None) + voc_object("cat", (20, 12, 50, 44))
    c = voc_object("bird", (10, 8, 50, 40))
    sets = {"trainval": ["000001", "000002"], "train": ["000001"], "val": ["000002"]}
    write_voc(root, 2007, {"000001": a, "000002": b}, sets)
    write_voc(root, 2007, {"000003": c, "000004": a + b}, {"test": ["000003", "000004"]})
    write_voc(root, 2012, {"2008_000001": b}, {"trainval": ["2008_000001"]}, mode="L")
    return root


# ----------------------------------------------------------------------------- WIDER FACE


def face(x: int, y: int, w: int, h: int, *, invalid: int = 0, blur: int = 0, occ: int = 0):
    """One face line's 10 numbers: x1 y1 w h blur expression illumination invalid occlusion pose."""
    return (x, y, w, h, blur, 0, 0, invalid, occ, 0)


def bbx_text(records: list[tuple[str, list[tuple]]], empty_counts: tuple[int, ...] = (0,)) -> str:
    """The ``wider_face_*_bbx_gt.txt`` text. Images without faces get the line of zeros after a
    count taken in turn from ``empty_counts``: the release writes 0 for some, 1 for others."""
    lines, empty = [], 0
    for path, faces in records:
        if faces:
            lines += [path, str(len(faces)), *(" ".join(map(str, f)) + " " for f in faces)]
        else:
            lines += [path, str(empty_counts[empty % len(empty_counts)]), "0 0 0 0 0 0 0 0 0 0 "]
            empty += 1
    return "\n".join(lines) + "\n"


def _cells(items: list) -> np.ndarray:
    cells = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        cells[i, 0] = item
    return cells


def write_wider_mats(folder: Path, records: list, settings: dict[str, list[list[int]]]) -> None:
    """The evaluation kit's ``.mat`` files: per event, per image; ``settings[s][k]`` holds the
    1-based face numbers of image ``k`` that count in setting ``s``. An image without faces gets
    one all-zero box, as the released ``wider_face_val.mat`` stores it."""
    events: dict[str, list[int]] = {}
    for k, (path, _) in enumerate(records):
        events.setdefault(path.split("/")[0], []).append(k)
    names = list(events)

    def per_event(make) -> np.ndarray:
        return _cells([_cells([make(k) for k in events[e]]) for e in names])

    folder.mkdir(parents=True, exist_ok=True)
    savemat(
        folder / "wider_face_val.mat",
        {
            "event_list": _cells(names),
            "file_list": per_event(lambda k: Path(records[k][0]).stem),
            "face_bbx_list": per_event(
                lambda k: np.array([f[:4] for f in records[k][1]] or [(0, 0, 0, 0)], dtype=float)
            ),
        },
    )
    for setting, numbers in settings.items():
        lists = per_event(lambda k, n=numbers: np.array(n[k], dtype=np.uint16).reshape(-1, 1))
        savemat(folder / f"wider_{setting}_val.mat", {"gt_list": lists})


def write_wider(
    root: Path,
    train: list[tuple[str, list[tuple]]],
    val: list[tuple[str, list[tuple]]],
    settings: dict[str, list[list[int]]],
    size: tuple[int, int] = (64, 48),
    empty_counts: tuple[int, ...] = (0,),
) -> Path:
    """A WIDER FACE tree in the official layout (eval kit under ``eval_tools/ground_truth``);
    ``empty_counts`` as in :func:`bbx_text`."""
    rng = np.random.default_rng(0)
    for subset, records in (("train", train), ("val", val)):
        for path, _ in records:
            target = root / f"WIDER_{subset}" / "images" / path
            target.parent.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(target)
        split_dir = root / "wider_face_split"
        split_dir.mkdir(parents=True, exist_ok=True)
        (split_dir / f"wider_face_{subset}_bbx_gt.txt").write_text(bbx_text(records, empty_counts))
    write_wider_mats(root / "eval_tools" / "ground_truth", val, settings)
    return root


TINY_WIDER_TRAIN = [
    ("0--Parade/0_Parade_a_1.jpg", [face(4, 5, 20, 22), face(40, 8, 10, 0)]),  # 2nd: degenerate
    ("0--Parade/0_Parade_a_2.jpg", []),
    ("1--Handshaking/1_Hand_b_3.jpg", [face(30, 10, 40, 30), face(2, 2, 8, 9, invalid=1)]),
]
TINY_WIDER_VAL = [
    ("0--Parade/0_Parade_c_1.jpg", [face(4, 5, 24, 26), face(40, 30, 8, 8, occ=2)]),
    ("0--Parade/0_Parade_c_2.jpg", []),
    ("1--Handshaking/1_Hand_d_1.jpg", [face(10, 4, 30, 30), face(1, 1, 5, 5, invalid=1)]),
]
TINY_WIDER_SETTINGS = {
    "easy": [[1], [], [1]],
    "medium": [[1], [], [1]],
    "hard": [[1, 2], [], [1]],
}


def tiny_wider(root: Path) -> Path:
    return write_wider(root, TINY_WIDER_TRAIN, TINY_WIDER_VAL, TINY_WIDER_SETTINGS)


# Category ids that are neither contiguous nor start at 1, listed out of numeric order: labels
# follow the listed order (dog -> 1, cat -> 2, bird -> 3).
COCO_CATEGORIES = [{"id": 17, "name": "dog"}, {"id": 3, "name": "cat"}, {"id": 90, "name": "bird"}]


def coco_images(root: Path, names: list[str], size: tuple[int, int] = (64, 48)) -> None:
    """Random RGB JPEGs at ``root/<name>`` (names may hold subfolders)."""
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / name)


def tiny_coco(root: Path) -> dict[str, Path]:
    """A COCO export with what real ones contain: sparse category ids, a crowd region, an image
    without annotations, a box of zero width, a box reaching past the image, subfolders in
    ``file_name``, and no ``info``/``licenses``/``area``/``segmentation`` (and no annotation
    ``id``) in the train file. Returns ``{"images": folder, "train": json, "test": json}``."""
    import json

    images = root / "images"
    train_names = ["a/one.jpg", "a/two.jpg", "b/three.jpg", "four.jpg"]
    test_names = ["test/five.jpg", "test/six.jpg"]
    coco_images(images, train_names + test_names)
    train = {
        "images": [{"id": 10 + i, "file_name": n} for i, n in enumerate(train_names)],
        "annotations": [
            {"image_id": 10, "category_id": 17, "bbox": [5, 6, 30, 30]},
            {"image_id": 10, "category_id": 3, "bbox": [40, 2, 20, 40], "iscrowd": 1},
            {"image_id": 11, "category_id": 90, "bbox": [10, 8, 0, 20]},  # zero width
            {"image_id": 11, "category_id": 3, "bbox": [50, 30, 30, 30]},  # past the image
            {"image_id": 12, "category_id": 17, "bbox": [2, 2, 40, 40]},
            # four.jpg (id 13) has no annotations
        ],
        "categories": COCO_CATEGORIES,
    }
    test = {
        "info": {"description": "tiny"},
        "licenses": [],
        "images": [
            {"id": 1, "file_name": n, "width": 64, "height": 48} for n in test_names[:1]
        ] + [{"id": 2, "file_name": test_names[1], "width": 64, "height": 48}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 17, "bbox": [5, 5, 30, 30], "area": 900.0,
             "iscrowd": 0, "segmentation": [[5, 5, 35, 5, 35, 35]]},
            {"id": 2, "image_id": 2, "category_id": 90, "bbox": [20, 10, 25, 25], "area": 625.0,
             "iscrowd": 0},
            {"id": 3, "image_id": 2, "category_id": 3, "bbox": [0, 0, 64, 48], "iscrowd": 1},
        ],
        "categories": COCO_CATEGORIES,
    }  # fmt: skip
    paths = {"images": images, "train": root / "train.json", "test": root / "test.json"}
    paths["train"].write_text(json.dumps(train))
    paths["test"].write_text(json.dumps(test))
    return paths


# ----------------------------------------------------------------------- exported VOC folder

FOLDER_XML = """<annotation><folder>JPEGImages</folder><filename>{filename}</filename>
{size}{objects}</annotation>"""


def write_voc_folder(
    root: Path,
    entries: dict[str, str],
    splits: dict[str, list[str]],
    suffixes: dict[str, str] | None = None,
    size: tuple[int, int] = (64, 48),
    without_size: tuple[str, ...] = (),
) -> Path:
    """An exported Pascal VOC folder as annotation tools write it: ``root/Annotations``,
    ``root/JPEGImages`` (suffix per id, ``.jpg`` by default) and ``root/ImageSets/Main``."""
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for name, objects in entries.items():
        suffix = (suffixes or {}).get(name, ".jpg")
        pixels = rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "JPEGImages" / f"{name}{suffix}")
        size_tag = (
            ""
            if name in without_size
            else (
                f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
            )
        )
        xml = FOLDER_XML.format(filename=f"{name}{suffix}", size=size_tag, objects=objects)
        (root / "Annotations" / f"{name}.xml").write_text(xml)
    for split, ids in splits.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


def tiny_voc_folder(root: Path) -> Path:
    """Own classes (vest, helmet; the train list names helmet first), a PNG among JPEGs, a
    difficult object; train a, b; val c; test c, d."""
    helmet, vest = voc_object("helmet", (5, 6, 30, 30)), voc_object("vest", (20, 10, 60, 44))
    entries = {"a": vest + helmet, "b": helmet, "c": vest + voc_object("helmet", (2, 2, 9, 9), "1"),
               "d": helmet + vest}  # fmt: skip
    splits = {"train": ["a", "b"], "val": ["c"], "test": ["c", "d"]}
    return write_voc_folder(root, entries, splits, suffixes={"b": ".png"})
