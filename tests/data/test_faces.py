from pathlib import Path

import numpy as np
import pytest

from qmimic.data.synthetic.faces import FacesSpec, ensure_faces, render_image
from qmimic.data.synthetic.sources import FacesSource
from qmimic.data.widerface.annotations import parse_wider_annotations
from qmimic.errors import UserError

TINY_FACES = FacesSpec(num_train=6, num_val=4, image_size=96, max_face=48)


@pytest.fixture(scope="module")
def faces_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_faces(tmp_path_factory.mktemp("cache"), TINY_FACES)


def test_tree_has_wider_layout(faces_root: Path):
    for subset, count in (("train", 6), ("val", 4)):
        assert len(list((faces_root / f"WIDER_{subset}" / "images").rglob("*.jpg"))) == count
        text = faces_root / "wider_face_split" / f"wider_face_{subset}_bbx_gt.txt"
        records, skipped = parse_wider_annotations(text)
        assert len(records) == count and not skipped
    for name in ("face", "easy", "medium", "hard"):
        assert (faces_root / "eval_tools" / "ground_truth" / f"wider_{name}_val.mat").is_file()


def test_read_back_through_wider_code(faces_root: Path):
    source = FacesSource(cache_dir=faces_root.parent, spec=TINY_FACES)
    source.prepare()
    assert source.root == faces_root and source.class_names == ("face",)
    image, target = source.dataset("test", train=False)[0]
    assert image.shape[0] == 3 and max(image.shape[1:]) == 96
    assert target["hard"].shape == target["labels"].shape
    _, train_target = source.dataset("train", train=True)[0]
    assert train_target["labels"].eq(1).all()


def test_generation_is_deterministic_by_seed():
    spec = FacesSpec(image_size=96, max_face=48)
    a = render_image(spec, np.random.default_rng([0, 0, 3]))
    b = render_image(spec, np.random.default_rng([0, 0, 3]))
    c = render_image(spec, np.random.default_rng([1, 0, 3]))
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    assert not np.array_equal(a[0], c[0])
    assert FacesSpec(seed=0).key() != FacesSpec(seed=1).key()


def test_settings_nest_like_wider_face():
    """easy within medium within hard; small, blurred or occluded faces only in hard; invalid
    faces in none; sizes from tiny to large; some images without faces."""
    spec = FacesSpec()
    images = [render_image(spec, np.random.default_rng([0, 0, i]))[1] for i in range(120)]
    faces = [f for image in images for f in image]
    marks = [f.settings(spec) for f in faces]
    for f, m in zip(faces, marks, strict=True):
        assert m["easy"] <= m["medium"] <= m["hard"]
        assert m["hard"] == (not f.invalid)
        if f.box[3] < spec.medium_min or f.occlusion == 2 or f.blur == 2:
            assert not m["medium"]
    assert 0 < sum(m["easy"] for m in marks) < sum(m["medium"] for m in marks)
    assert sum(m["medium"] for m in marks) < sum(m["hard"] for m in marks) < len(faces)
    heights = [f.box[3] for f in faces]
    assert min(heights) < 10 and max(heights) > 64
    assert any(not image for image in images)
    assert any(f.occlusion for f in faces) and any(f.invalid for f in faces)


def test_unwritable_cache_is_a_user_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="data.root"):
        ensure_faces(blocker / "sub", TINY_FACES)
