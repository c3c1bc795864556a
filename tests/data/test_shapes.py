from pathlib import Path

import numpy as np
import pytest

from helpers import TINY_SPEC
from qmimic.data.synthetic.shapes import SHAPES_CLASSES, ShapesSpec, ensure_shapes, render_image
from qmimic.data.synthetic.sources import ShapesSource
from qmimic.errors import UserError


def test_tree_has_voc_layout(shapes_cache: Path):
    root = shapes_cache / f"shapes-{TINY_SPEC.key()}"
    year = root / "VOCdevkit" / "VOC2007"
    for split, count in (("train", 8), ("val", 4), ("trainval", 12), ("test", 4)):
        ids = (year / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
        assert len(ids) == count
    assert len(list((year / "JPEGImages").glob("*.jpg"))) == 16
    assert len(list((year / "Annotations").glob("*.xml"))) == 16


def test_read_back_through_voc_code(shapes_cache: Path):
    source = ShapesSource(cache_dir=shapes_cache, spec=TINY_SPEC)
    source.prepare()
    dataset = source.dataset("test", train=False)
    image, target = dataset[0]
    assert image.shape == (3, TINY_SPEC.image_size, TINY_SPEC.image_size)
    assert target["labels"].min() >= 1 and target["labels"].max() <= len(SHAPES_CLASSES)
    boxes = target["boxes"]
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()
    assert boxes.min() >= 1 and boxes.max() <= TINY_SPEC.image_size


def test_generation_is_deterministic_by_seed():
    spec = ShapesSpec(image_size=96, max_object_size=48)
    a = render_image(spec, np.random.default_rng([0, 0, 3]))
    b = render_image(spec, np.random.default_rng([0, 0, 3]))
    c = render_image(spec, np.random.default_rng([1, 0, 3]))
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert not np.array_equal(a[0], c[0])


def test_spec_change_gets_its_own_cache_folder():
    assert ShapesSpec(seed=0).key() != ShapesSpec(seed=1).key()
    assert ShapesSpec(image_size=96).key() != ShapesSpec(image_size=128).key()


def test_content_is_varied_enough_to_be_a_detection_problem():
    """Over many images: every class appears, sizes span small to large, some are difficult."""
    spec = ShapesSpec()
    objects = [
        o for i in range(60) for o in render_image(spec, np.random.default_rng([0, 0, i]))[1]
    ]
    names = {o["name"] for o in objects}
    sides = [max(o["box"][2] - o["box"][0], o["box"][3] - o["box"][1]) + 1 for o in objects]
    assert names == set(SHAPES_CLASSES)
    assert min(sides) < 16 and max(sides) > 64
    assert 0 < sum(o["difficult"] for o in objects) < len(objects) / 2


def test_unwritable_cache_is_a_user_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="data.root"):
        ensure_shapes(blocker / "sub", TINY_SPEC)
