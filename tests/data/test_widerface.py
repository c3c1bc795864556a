from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import loadmat, savemat
from trees import (
    TINY_WIDER_SETTINGS,
    TINY_WIDER_TRAIN,
    TINY_WIDER_VAL,
    bbx_text,
    face,
    tiny_wider,
    write_wider,
)

from qmimic.data.images import BadSampleError
from qmimic.data.widerface.annotations import (
    WiderFaceDataset,
    find_eval_lists,
    parse_wider_annotations,
    read_setting_lists,
)
from qmimic.data.widerface.sources import WiderFaceSource
from qmimic.errors import UserError


def test_parse_records_zero_faces_and_attributes(tmp_path: Path):
    path = tmp_path / "gt.txt"
    records = [
        ("0--Parade/a.jpg", [face(1, 2, 3, 4), face(5, 6, 7, 8, invalid=1, blur=2, occ=1)]),
        ("0--Parade/empty.jpg", []),
        ("1--Hand/b.jpg", [face(9, 9, 10, 11)]),
        ("1--Hand/empty_last.jpg", []),
    ]
    path.write_text(bbx_text(records))
    parsed, skipped = parse_wider_annotations(path)
    assert skipped == []
    assert [r.path for r in parsed] == [r[0] for r in records]
    assert [len(r.boxes) for r in parsed] == [2, 0, 1, 0]  # the line of zeros is no face
    assert parsed[0].boxes.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    # blur expression illumination invalid occlusion pose
    assert parsed[0].attributes.tolist() == [[0, 0, 0, 0, 0, 0], [2, 0, 0, 1, 1, 0]]
    assert parsed[2].line == 8 and parsed[2].key == "1--Hand/b"


@pytest.mark.parametrize("count", [0, 1])
def test_both_spellings_of_an_image_without_faces_are_read(tmp_path: Path, count: int):
    # The release writes "0" or "1" before the line of zeros (e.g. val's
    # 0--Parade/0_Parade_Parade_0_275.jpg is "1" then ten zeros).
    path = tmp_path / "gt.txt"
    path.write_text(f"e/a.jpg\n{count}\n0 0 0 0 0 0 0 0 0 0 \ne/b.jpg\n1\n1 1 4 4 0 0 0 0 0 0\n")
    parsed, skipped = parse_wider_annotations(path)
    assert skipped == [] and [r.path for r in parsed] == ["e/a.jpg", "e/b.jpg"]
    assert [len(r.boxes) for r in parsed] == [0, 1] and parsed[0].boxes.shape == (0, 4)
    assert [r.empty_line for r in parsed] == [True, False] and parsed[1].line == 4


def test_zero_face_record_without_zeros_line_is_read(tmp_path: Path):
    path = tmp_path / "gt.txt"
    path.write_text("e/a.jpg\n0\ne/b.jpg\n1\n1 1 4 4 0 0 0 0 0 0\n")
    parsed, _ = parse_wider_annotations(path)
    assert [len(r.boxes) for r in parsed] == [0, 1]


@pytest.mark.parametrize(
    "text, where, message",
    [
        ("e/a.jpg\nx\n", ":2:", "expected the face count of e/a.jpg"),
        ("e/a.jpg\n1\n1 2 3\n", ":3:", "10 numbers"),
        ("e/a.jpg\n1\n1 2 3 x 0 0 0 0 0 0\n", ":3:", "non-number"),
        ("e/a.jpg\n3\n1 2 3 4 0 0 0 0 0 0\n", ":2:", "has 3 faces but the file ends"),
    ],
)
def test_malformed_record_names_file_and_line(tmp_path: Path, text: str, where: str, message):
    path = tmp_path / "gt.txt"
    path.write_text(text)
    with pytest.raises(BadSampleError, match=message) as info:
        parse_wider_annotations(path)
    assert f"{path}{where}" in str(info.value)


def test_skip_resumes_at_next_image(tmp_path: Path):
    path = tmp_path / "gt.txt"
    path.write_text(
        "e/a.jpg\n2\n1 2 3 4 0 0 0 0 0 0\nbroken line\ne/b.jpg\n1\n1 1 5 5 0 0 0 0 0 0\n"
    )
    parsed, skipped = parse_wider_annotations(path, skip_bad=True)
    assert [r.path for r in parsed] == ["e/b.jpg"]
    assert len(skipped) == 1 and f"{path}:4:" in skipped[0]


def test_training_targets(tmp_path: Path):
    tiny_wider(tmp_path)
    dataset = WiderFaceDataset(tmp_path, "train", train=True)
    assert len(dataset) == 3
    image, target = dataset[0]
    assert image.shape == (3, 48, 64)
    # xywh -> xyxy with x2 = x1 + w; the h=0 face is dropped and counted
    assert target["boxes"].tolist() == [[4, 5, 24, 27]]
    assert target["labels"].tolist() == [1] and target["dropped_boxes"] == 1
    _, empty = dataset[1]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].dtype == torch.int64
    _, third = dataset[2]
    # the invalid face is left out; the other reaches beyond the 64 px wide image: clipped
    assert third["boxes"].tolist() == [[30, 10, 64, 40]]
    assert third["clipped_boxes"] == 1
    assert "easy" not in third


def test_evaluation_targets_carry_setting_masks(tmp_path: Path):
    tiny_wider(tmp_path)
    dataset = WiderFaceDataset(tmp_path, "val")
    _, first = dataset[0]
    assert first["boxes"].tolist() == [[4, 5, 28, 31], [40, 30, 48, 38]]
    assert first["easy"].tolist() == [True, False]
    assert first["medium"].tolist() == [True, False]
    assert first["hard"].tolist() == [True, True]
    assert first["difficult"].tolist() == [False, False]
    _, empty = dataset[1]
    # no face: the one all-zero box of the lists, counting in no setting
    assert empty["boxes"].tolist() == [[0, 0, 0, 0]] and empty["hard"].tolist() == [False]
    _, third = dataset[2]
    # the invalid face stays (face numbers must match the lists), counted in no setting
    assert third["invalid"].tolist() == [False, True]
    assert third["hard"].tolist() == [True, False]
    assert third["difficult"].tolist() == [False, True]
    assert third["image_id"] == "1--Handshaking/1_Hand_d_1"


def test_official_mat_structure_is_read(tmp_path: Path):
    tiny_wider(tmp_path)
    paths = find_eval_lists(tmp_path)
    raw = loadmat(paths["wider_hard_val.mat"])["gt_list"]
    assert raw.shape == (2, 1) and raw[0][0].shape == (2, 1)  # events, then images
    table = read_setting_lists(paths)
    listed = table["0--Parade/0_Parade_c_1"]
    assert listed.faces == 2 and not listed.zero_row
    assert listed.keep["hard"].tolist() == [0, 1] and listed.keep["easy"].tolist() == [0]
    empty = table["0--Parade/0_Parade_c_2"]  # stored as one all-zero box, as released
    assert empty.faces == 0 and empty.zero_row


def test_mat_face_count_must_match_text(tmp_path: Path):
    val = [(TINY_WIDER_VAL[0][0], TINY_WIDER_VAL[0][1][:1]), *TINY_WIDER_VAL[1:]]
    write_wider(tmp_path, TINY_WIDER_TRAIN, TINY_WIDER_VAL, TINY_WIDER_SETTINGS)
    (tmp_path / "wider_face_split" / "wider_face_val_bbx_gt.txt").write_text(bbx_text(val))
    with pytest.raises(UserError, match="lists 2 faces for 0--Parade/0_Parade_c_1") as info:
        WiderFaceDataset(tmp_path, "val")
    assert "wider_face_val.mat" in str(info.value) and "line 1" in str(info.value)


def test_missing_eval_lists_name_the_expected_folders(tmp_path: Path):
    tiny_wider(tmp_path)
    (tmp_path / "eval_tools" / "ground_truth" / "wider_easy_val.mat").unlink()
    with pytest.raises(UserError, match="wider_easy_val.mat") as info:
        WiderFaceDataset(tmp_path, "val")
    assert str(tmp_path / "eval_tools" / "ground_truth") in str(info.value)
    WiderFaceDataset(tmp_path, "train", train=True)  # training needs no lists


def test_eval_lists_are_found_in_other_places(tmp_path: Path):
    tiny_wider(tmp_path)
    (tmp_path / "eval_tools" / "ground_truth").rename(tmp_path / "gt")
    assert set(find_eval_lists(tmp_path, tmp_path / "gt").values()) == set(
        (tmp_path / "gt").iterdir()
    )
    (tmp_path / "gt").rename(tmp_path / "ground_truth")
    assert {p.parent for p in find_eval_lists(tmp_path).values()} == {tmp_path / "ground_truth"}


def test_eval_lists_are_found_one_file_at_a_time(tmp_path: Path):
    # As released: the split archive holds wider_face_val.mat, the evaluation kit the settings.
    tiny_wider(tmp_path)
    kit = tmp_path / "eval_tools" / "ground_truth"
    (kit / "wider_face_val.mat").rename(tmp_path / "wider_face_split" / "wider_face_val.mat")
    paths = find_eval_lists(tmp_path)
    assert paths["wider_face_val.mat"] == tmp_path / "wider_face_split" / "wider_face_val.mat"
    assert paths["wider_hard_val.mat"] == kit / "wider_hard_val.mat"
    assert len(WiderFaceDataset(tmp_path, "val")) == 3
    WiderFaceSource(tmp_path).prepare()


def test_missing_image_names_file_and_line(tmp_path: Path):
    tiny_wider(tmp_path)
    image = tmp_path / "WIDER_train" / "images" / TINY_WIDER_TRAIN[2][0]
    image.unlink()
    with pytest.raises(BadSampleError, match="line 8") as info:
        WiderFaceDataset(tmp_path, "train", train=True)[2]
    assert str(image) in str(info.value)


def test_train_subset_cannot_be_evaluated(tmp_path: Path):
    tiny_wider(tmp_path)
    with pytest.raises(UserError, match="val only"):
        WiderFaceDataset(tmp_path, "train", train=False)


def test_an_image_without_faces_keeps_the_lists_zero_box_for_evaluation(tmp_path: Path):
    """The lists store an image without faces as one [0 0 0 0] box that counts in no setting;
    evaluation targets keep it (so the image is scored), training targets have no box."""
    write_wider(tmp_path, TINY_WIDER_TRAIN, TINY_WIDER_VAL, TINY_WIDER_SETTINGS, empty_counts=(1,))
    _, target = WiderFaceDataset(tmp_path, "val")[1]
    assert target["boxes"].tolist() == [[0.0, 0.0, 0.0, 0.0]]
    assert not (target["easy"] | target["medium"] | target["hard"]).any()
    assert target["difficult"].tolist() == [True]
    _, train_target = WiderFaceDataset(tmp_path, "train", train=True)[1]
    assert train_target["boxes"].shape == (0, 4)


def test_lists_without_a_box_for_an_empty_image_leave_it_without_boxes(tmp_path: Path):
    """Lists written with no row at all for an image without faces: nothing to score there, and
    the metric skips the image as the official loop does."""
    tiny_wider(tmp_path)
    folder = tmp_path / "eval_tools" / "ground_truth"
    face_mat = loadmat(folder / "wider_face_val.mat")
    face_mat["face_bbx_list"][0][0][1][0] = np.zeros((0, 4))
    savemat(folder / "wider_face_val.mat", {k: v for k, v in face_mat.items() if k[0] != "_"})
    assert WiderFaceDataset(tmp_path, "val")[1][1]["boxes"].shape == (0, 4)


# ----------------------------------------------------------------------------- source


def test_source_checks_the_layout(tmp_path: Path):
    with pytest.raises(UserError, match="dataset root not found") as info:
        WiderFaceSource(tmp_path / "nowhere").prepare()
    assert "wider_face_split/wider_face_{train,val}_bbx_gt.txt" in str(info.value)
    tiny_wider(tmp_path)
    WiderFaceSource(tmp_path).prepare()
    (tmp_path / "wider_face_split" / "wider_face_val_bbx_gt.txt").unlink()
    with pytest.raises(UserError, match="WIDER FACE file not found") as info:
        WiderFaceSource(tmp_path).prepare()
    assert str(tmp_path / "wider_face_split" / "wider_face_val_bbx_gt.txt") in str(info.value)


def test_source_splits_default_to_testing_on_val(tmp_path: Path):
    tiny_wider(tmp_path)
    source = WiderFaceSource(tmp_path)
    assert len(source.dataset("train", train=True)) == 3
    assert "hard" in source.dataset("test", train=False)[0][1]
    with pytest.raises(UserError, match="one of train, val"):
        WiderFaceSource(tmp_path, {"train": "test"})
