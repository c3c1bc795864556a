from pathlib import Path

import pytest
import torch
from trees import TINY_WIDER_TRAIN, bbx_text, tiny_wider, voc_object, write_voc

from qmimic.data import DataWarning, DetectionDataModule, VOCSource, WiderFaceSource
from qmimic.data.datamodule import auto_workers
from qmimic.data.grouping import GroupedBatchSampler
from qmimic.data.images import BadSampleError
from qmimic.data.transforms import RandomHorizontalFlip
from qmimic.errors import UserError

IDS = [f"{i:06d}" for i in range(10)]


def voc_module(root: Path, **kwargs) -> DetectionDataModule:
    source = VOCSource(root, {"train": ["2007-train"], "val": ["2007-val"], "test": ["2007-val"]})
    return DetectionDataModule(source, **{"batch_size": 3, "hflip": 0.0, **kwargs})


def mixed_voc(root: Path) -> Path:
    """10 images: even ones landscape 64x48, odd ones portrait 40x56; one dog each."""
    dog = voc_object("dog", (2, 2, 30, 30))
    write_voc(root, 2007, {i: dog for i in IDS[0::2]}, {}, size=(64, 48))
    write_voc(root, 2007, {i: dog for i in IDS[1::2]}, {"train": IDS, "val": IDS[:4]}, (40, 56))
    return root


def epoch_ids(module: DetectionDataModule) -> list[list[str]]:
    module.setup("fit")
    return [[t["image_id"] for t in targets] for _, targets in module.train_dataloader()]


def test_batches_keep_variable_sizes(tmp_path: Path):
    module = voc_module(mixed_voc(tmp_path))
    images, targets = next(iter(module.val_dataloader()))
    assert [tuple(i.shape) for i in images] == [(3, 48, 64), (3, 56, 40), (3, 48, 64)]
    assert [t["image_id"] for t in targets] == IDS[:3]
    assert module.num_classes == 21


def test_shuffle_is_seeded(tmp_path: Path):
    mixed_voc(tmp_path)
    first = epoch_ids(voc_module(tmp_path, seed=3))
    assert first == epoch_ids(voc_module(tmp_path, seed=3))
    assert first != epoch_ids(voc_module(tmp_path, seed=4))
    assert sorted(sum(first, [])) == IDS


def test_aspect_ratio_grouping(tmp_path: Path):
    mixed_voc(tmp_path)
    module = voc_module(tmp_path, aspect_ratio_grouping=True, seed=1)
    batches = epoch_ids(module)
    for batch in batches:
        assert len({int(i) % 2 for i in batch}) == 1  # all landscape or all portrait
    assert sorted(sum(batches, [])) == IDS
    assert len(batches) == len(module.train_dataloader()) == 4  # 5 + 5 images in batches of 3
    assert batches == epoch_ids(voc_module(tmp_path, aspect_ratio_grouping=True, seed=1))


def test_grouped_sampler_changes_order_per_epoch():
    sampler = GroupedBatchSampler([0, 1] * 6, batch_size=2, seed=0)
    first = list(sampler)
    assert list(sampler) == first
    sampler.sampler.set_epoch(1)  # where Lightning calls it: batch_sampler.sampler
    assert list(sampler) != first
    assert sorted(i for b in first for i in b) == list(range(12))


def test_flip_conventions():
    target = {"boxes": torch.tensor([[4.0, 5.0, 24.0, 27.0]])}
    image = torch.zeros(3, 48, 64)
    _, voc = RandomHorizontalFlip(1.0)(image, target)
    _, wider = RandomHorizontalFlip(1.0, offset=0)(image, target)
    assert voc["boxes"].tolist() == [[41, 5, 61, 27]]  # 1-based inclusive: W + 1 - x
    assert wider["boxes"].tolist() == [[40, 5, 60, 27]]  # x2 = x1 + w: W - x


def corrupt_first(root: Path) -> Path:
    path = root / "VOCdevkit/VOC2007/JPEGImages" / f"{IDS[0]}.jpg"
    path.write_bytes(b"not a jpeg")
    return path


def test_bad_sample_raises_naming_the_file(tmp_path: Path):
    path = corrupt_first(mixed_voc(tmp_path))
    module = voc_module(tmp_path)
    with pytest.raises(BadSampleError, match="cannot read image") as info:
        list(module.val_dataloader())
    assert str(path) in str(info.value)


def test_bad_sample_from_a_worker_has_no_traceback(tmp_path: Path):
    path = corrupt_first(mixed_voc(tmp_path))
    module = voc_module(tmp_path, num_workers=1)
    with pytest.raises(BadSampleError) as info:
        list(module.val_dataloader())
    assert str(info.value).startswith(f"cannot read image {path}")
    assert "Traceback" not in str(info.value)


@pytest.mark.parametrize("workers", [0, 1])
def test_skip_drops_bad_samples_and_reports_them(tmp_path: Path, workers: int):
    path = corrupt_first(mixed_voc(tmp_path))
    module = voc_module(tmp_path, on_bad_sample="skip", num_workers=workers)
    seen = []
    for batch in module.val_dataloader():
        batch = module.on_after_batch_transfer(batch, 0)
        assert len(batch[0]) == len(batch[1])
        seen += [t["image_id"] for t in batch[1]]
        assert all("skipped_samples" not in t for t in batch[1])
    assert seen == IDS[1:4]  # dropped, not replaced: no sample counted twice
    assert module.report.skipped("val") == [f"cannot read image {path}: cannot identify image "
                                           f"file '{path}'"]  # fmt: skip
    with pytest.warns(DataWarning, match="left 1 bad samples out of the val split") as record:
        module.teardown("validate")
    assert str(path) in str(record[0].message)


def test_a_batch_of_only_bad_samples_arrives_empty(tmp_path: Path):
    mixed_voc(tmp_path)
    for image in IDS[:3]:
        (tmp_path / "VOCdevkit/VOC2007/JPEGImages" / f"{image}.jpg").write_bytes(b"not a jpeg")
    module = voc_module(tmp_path, on_bad_sample="skip")
    first, second = [module.on_after_batch_transfer(b, 0) for b in module.val_dataloader()]
    assert first == ([], [])  # the module steps skip it
    assert [t["image_id"] for t in second[1]] == [IDS[3]]
    assert len(module.report.skipped("val")) == 3


def test_missing_files_stop_the_run_before_it_starts(tmp_path: Path):
    mixed_voc(tmp_path)
    for image in IDS[2:5]:
        (tmp_path / "VOCdevkit/VOC2007/JPEGImages" / f"{image}.jpg").unlink()
    (tmp_path / "VOCdevkit/VOC2007/Annotations" / f"{IDS[9]}.xml").unlink()
    module = voc_module(tmp_path)
    with pytest.raises(UserError, match=r"4 file\(s\) listed for the train split do not exist "
                       r"\(4 of its 10 samples\).*000002.jpg.*on_bad_sample=skip"):  # fmt: skip
        module.use_splits(["train", "val"])
    skipping = voc_module(tmp_path, on_bad_sample="skip")
    skipping.use_splits(["train", "val"])
    assert len(skipping.splits["train"]) == 6 and len(skipping.splits["val"]) == 2
    assert len(skipping.report.skipped("train")) == 4
    assert skipping.report.skipped("val") == [
        f"file not found: {tmp_path}/VOCdevkit/VOC2007/JPEGImages/{i}.jpg" for i in IDS[2:4]
    ]
    ids = [t["image_id"] for _, targets in skipping.val_dataloader() for t in targets]
    assert ids == IDS[:2]


def test_only_the_splits_in_use_need_their_files(tmp_path: Path):
    mixed_voc(tmp_path)
    (tmp_path / "VOCdevkit/VOC2007/ImageSets/Main/train.txt").unlink()
    module = voc_module(tmp_path)
    module.use_splits(["val"])  # what evaluation does: train's list need not exist
    assert len(module.splits["val"]) == 4
    with pytest.raises(UserError, match="image set not found"):
        voc_module(tmp_path).use_splits(["train", "val"])


def test_clipping_is_counted_once_per_image(tmp_path: Path):
    write_voc(tmp_path, 2007, {"a": voc_object("dog", (5, 5, 90, 40))}, {"train": ["a"]})
    write_voc(tmp_path, 2007, {}, {"val": ["a"]})
    module = voc_module(tmp_path)
    for _ in range(2):  # two epochs
        for batch in module.train_dataloader():
            module.on_after_batch_transfer(batch, 0)
    with pytest.warns(DataWarning, match="clipped 1 boxes .* in 1 images"):
        module.teardown("fit")


def test_malformed_wider_records_are_skipped_at_setup(tmp_path: Path):
    tiny_wider(tmp_path)
    text = bbx_text(TINY_WIDER_TRAIN).replace("\n0\n", "\nzero\n")
    (tmp_path / "wider_face_split/wider_face_train_bbx_gt.txt").write_text(text)
    source = WiderFaceSource(tmp_path, on_bad_sample="skip")
    module = DetectionDataModule(source, on_bad_sample="skip")
    module.setup("fit")
    assert len(module.splits["train"]) == 2
    with pytest.warns(DataWarning, match=r"left 1 bad samples out of the train split.*txt:6"):
        module.teardown("fit")
    with pytest.raises(BadSampleError, match="wider_face_train_bbx_gt.txt:6"):
        DetectionDataModule(WiderFaceSource(tmp_path)).setup("fit")


def test_unknown_bad_sample_policy_is_a_user_error(tmp_path: Path):
    with pytest.raises(UserError, match="on_bad_sample='ignore'"):
        voc_module(tmp_path, on_bad_sample="ignore")


@pytest.mark.parametrize(
    ("cpus", "processes", "expected"),
    [(1, 1, 0), (2, 1, 0), (4, 1, 2), (16, 1, 8), (64, 1, 8), (16, 8, 0), (16, 2, 4)],
)
def test_auto_workers_leave_two_cores_to_the_model_and_share_big_machines(
    cpus: int, processes: int, expected: int
):
    assert auto_workers(cpus, processes) == expected


def test_num_workers_auto_follows_the_machine(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert voc_module(tmp_path, num_workers="auto").num_workers == auto_workers()
    with pytest.raises(UserError, match="data.num_workers must be 0 .* or auto; got 'many'"):
        voc_module(tmp_path, num_workers="many")
