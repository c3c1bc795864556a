"""WIDER FACE on disk: the ``bbx_gt.txt`` annotations, the official setting lists, a dataset.

Official layout (``root`` is the folder given as ``data.root``)::

    root/WIDER_train/images/<event>/<name>.jpg
    root/WIDER_val/images/<event>/<name>.jpg
    root/wider_face_split/wider_face_{train,val}_bbx_gt.txt
    root/eval_tools/ground_truth/wider_{face,easy,medium,hard}_val.mat   (the evaluation kit)
    root/wider_face_split/wider_face_val.mat                           (the split archive's copy)

Each of the four ``.mat`` files is looked for on its own in ``data.gt_dir`` or in :data:`GT_DIRS`,
so a tree with ``wider_face_val.mat`` in ``wider_face_split/`` and the setting lists in
``eval_tools/ground_truth/`` works as released.

``wider_face_<subset>_bbx_gt.txt`` holds one record per image: the image path (relative to
``WIDER_<subset>/images``), the face count ``n``, then ``n`` lines
``x1 y1 w h blur expression illumination invalid occlusion pose``. An image without faces is
written with one line of ten zeros, after a count of 0 or after a count of 1: both spellings
occur in the released files (four val images use the second). The line of zeros is not a face.

In the evaluation lists, such an image has one all-zero box and no face in any setting; the
official evaluation therefore scores the image, and every detection on it is a false positive
(unless it overlaps that one-pixel box by half, which makes it ignored). Evaluation targets keep
that box, marked as counting in no setting, so :class:`~qmimic.metrics.WiderFaceAP` does the
same. Images whose lists hold no box at all are skipped by the metric, as the official loop
skips them.

Boxes become xyxy with ``x2 = x1 + w``, ``y2 = y1 + h``, as the official evaluation converts
them (it then measures overlaps with the +1 pixel convention, as
:class:`~qmimic.metrics.WiderFaceAP` does).

The evaluation settings come from the official lists: ``wider_face_val.mat`` (``event_list``,
``file_list``, ``face_bbx_list``) and ``wider_{easy,medium,hard}_val.mat`` (``gt_list``: per event,
per image, the 1-based numbers of the faces that count in that setting). A face counts in a
setting iff its number is in that setting's list; all other faces are ignored by the metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy.io import loadmat
from torch import Tensor
from torch.utils.data import Dataset

from qmimic.data.boxes import clean_target, select
from qmimic.data.images import BadSampleError, image_size, load_rgb_image
from qmimic.errors import UserError
from qmimic.metrics.widerface import SETTINGS

WIDER_CLASSES = ("face",)
ATTRIBUTES = ("blur", "expression", "illumination", "invalid", "occlusion", "pose")
SUBSETS = ("train", "val")
GT_DIRS = ("eval_tools/ground_truth", "ground_truth", "wider_face_split")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass
class WiderRecord:
    """One image of a ``bbx_gt.txt`` file.

    ``path`` is relative to ``WIDER_<subset>/images``; ``boxes`` float ``[N, 4]`` x1, y1, w, h as
    written; ``attributes`` int ``[N, 6]`` in :data:`ATTRIBUTES` order; ``line`` is the 1-based
    line of the path in the file; ``empty_line``: the image has no face and is written with the
    line of zeros (after a count of 0 or 1), which is not among ``boxes``.
    """

    path: str
    boxes: np.ndarray
    attributes: np.ndarray
    line: int
    empty_line: bool = False

    @property
    def key(self) -> str:
        """``<event>/<name>`` without extension, as the official ``.mat`` lists name images."""
        return str(Path(self.path).with_suffix(""))


def annotation_file(root: Path, subset: str) -> Path:
    return root / "wider_face_split" / f"wider_face_{subset}_bbx_gt.txt"


def images_dir(root: Path, subset: str) -> Path:
    return root / f"WIDER_{subset}" / "images"


def _is_image_path(line: str) -> bool:
    return line.lower().endswith(IMAGE_SUFFIXES) and len(line.split()) == 1


def _face_line(text: str, where: str) -> list[float]:
    fields = text.split()
    if len(fields) not in (4, 10):
        raise BadSampleError(
            f"{where}: expected 'x1 y1 w h blur expression illumination invalid occlusion pose' "
            f"(10 numbers), got {text.strip()!r}"
        )
    try:
        values = [float(f) for f in fields]
    except ValueError:
        raise BadSampleError(f"{where}: face line has a non-number: {text.strip()!r}") from None
    return values + [0.0] * (10 - len(values))


def _read_record(lines: list[str], start: int, path: Path) -> tuple[WiderRecord, int]:
    """The record whose image path is ``lines[start]``; returns it and the next line index."""
    name = lines[start].strip()
    if not _is_image_path(name):
        raise BadSampleError(f"{path}:{start + 1}: expected an image path, got {name!r}")
    if start + 1 >= len(lines):
        raise BadSampleError(f"{path}:{start + 1}: the file ends before the face count of {name}")
    count_text = lines[start + 1].strip()
    if not count_text.isdigit():
        raise BadSampleError(
            f"{path}:{start + 2}: expected the face count of {name}, got {count_text!r}"
        )
    count = int(count_text)
    end = start + 2 + count
    if end > len(lines):
        raise BadSampleError(
            f"{path}:{start + 2}: {name} has {count} faces but the file ends after "
            f"{len(lines) - start - 2} face lines"
        )
    faces = [_face_line(lines[i], f"{path}:{i + 1}") for i in range(start + 2, end)]
    table = np.asarray(faces, dtype=np.float64).reshape(-1, 10)
    empty_line = count == 1 and not table.any()  # "1" then the line of zeros: no face
    if count == 0 and end < len(lines) and not _is_image_path(lines[end].strip()):
        empty_line = True  # "0" then the line of zeros
        end += 1
    if empty_line:
        table = table[:0]
    record = WiderRecord(
        name, table[:, :4].copy(), table[:, 4:].astype(np.int64), start + 1, empty_line
    )
    return record, end


def parse_wider_annotations(
    path: str | Path, skip_bad: bool = False
) -> tuple[list[WiderRecord], list[str]]:
    """Read a ``wider_face_<subset>_bbx_gt.txt`` file.

    Args:
        path: the file.
        skip_bad: skip malformed records (resuming at the next image path) instead of raising.

    Returns:
        the records in file order, and the messages of the skipped records.

    Raises:
        BadSampleError: a malformed record, naming the file and line (unless ``skip_bad``).
    """
    path = Path(path)
    lines = [line for line in path.read_text(errors="replace").splitlines()]
    while lines and not lines[-1].strip():
        lines.pop()
    records, skipped, index = [], [], 0
    while index < len(lines):
        if not lines[index].strip():
            index += 1
            continue
        try:
            record, index = _read_record(lines, index, path)
        except BadSampleError as exc:
            if not skip_bad:
                raise
            skipped.append(str(exc))
            index += 1
            while index < len(lines) and not _is_image_path(lines[index].strip()):
                index += 1
            continue
        records.append(record)
    return records, skipped


# ----------------------------------------------------------------------------- setting lists


EVAL_FILES = ("wider_face_val.mat", *(f"wider_{s}_val.mat" for s in SETTINGS))


def find_eval_lists(root: Path, gt_dir: str | Path | None = None) -> dict[str, Path]:
    """Where each of the official evaluation files (:data:`EVAL_FILES`) is: the first of
    ``gt_dir`` (when given) and ``root``'s :data:`GT_DIRS` that holds it, looked up one file at
    a time (the split archive and the evaluation kit put them in different folders).

    Raises:
        UserError: a file is in none of those folders; the message names each missing file and
        where it was looked for.
    """
    folders = [Path(gt_dir).expanduser()] if gt_dir else []
    folders += [root / d for d in GT_DIRS]
    found, missing = {}, []
    for name in EVAL_FILES:
        path = next((folder / name for folder in folders if (folder / name).is_file()), None)
        if path is None:
            missing.append(name)
        else:
            found[name] = path
    if missing:
        raise UserError(
            f"WIDER FACE evaluation lists not found: {', '.join(missing)} in none of "
            + ", ".join(str(f) for f in folders)
            + ". They come with the official evaluation kit (eval_tools.zip, folder "
            "ground_truth; wider_face_val.mat also with wider_face_split.zip): extract them "
            "into data.root, or set data.gt_dir to the folder holding them."
        )
    return found


def _strings(cell: np.ndarray) -> list[str]:
    return [str(np.asarray(item).ravel()[0]) for item in np.asarray(cell).ravel()]


def _cells(cell: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(item) for item in np.asarray(cell).ravel()]


@dataclass(frozen=True)
class ListedImage:
    """One image of the official evaluation lists.

    ``faces``: its face count (an all-zero row is not a face); ``keep``: per setting, the 0-based
    indices of the faces that count; ``zero_row``: the lists give the image one all-zero box
    (how the release stores an image without faces).
    """

    faces: int
    keep: dict[str, np.ndarray]
    zero_row: bool


def read_setting_lists(paths: dict[str, Path]) -> dict[str, ListedImage]:
    """``{"<event>/<name>": ListedImage}`` from the files :func:`find_eval_lists` found."""
    try:
        face = loadmat(paths["wider_face_val.mat"])
        lists = {s: loadmat(paths[f"wider_{s}_val.mat"])["gt_list"] for s in SETTINGS}
        events = _strings(face["event_list"])
        files = [_strings(f) for f in _cells(face["file_list"])]
        boxes = [_cells(b) for b in _cells(face["face_bbx_list"])]
        per_setting = {s: [_cells(g) for g in _cells(lists[s])] for s in SETTINGS}
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise UserError(
            f"cannot read the WIDER FACE evaluation lists {', '.join(map(str, paths.values()))}: "
            f"{exc}; expected the official wider_face_val.mat (event_list, file_list, "
            "face_bbx_list) and wider_{easy,medium,hard}_val.mat (gt_list)"
        ) from None
    table = {}
    for e, event in enumerate(events):
        for i, name in enumerate(files[e]):
            rows = np.asarray(boxes[e][i], dtype=np.float64).reshape(-1, 4)
            zero_row = len(rows) == 1 and not rows.any()
            keep = {
                s: np.asarray(per_setting[s][e][i]).astype(np.int64).ravel() - 1 for s in SETTINGS
            }
            table[f"{event}/{name}"] = ListedImage(0 if zero_row else len(rows), keep, zero_row)
    return table


# ----------------------------------------------------------------------------- dataset


class WiderFaceDataset(Dataset):
    """One subset (``train`` or ``val``) of a WIDER FACE tree.

    Items are ``(image, target)``: ``image`` float ``[3, H, W]`` in [0, 1]; ``target`` holds
    ``boxes`` float ``[M, 4]`` xyxy pixels (``x2 = x1 + w``; clipped to the image), ``labels``
    int64 ``[M]`` (all 1, face), ``invalid`` bool ``[M]``, ``difficult`` bool ``[M]`` and
    ``image_id`` (``<event>/<name>``).

    - Training targets (``train=True``) leave out faces flagged ``invalid`` and boxes without
      area (``w <= 0`` or ``h <= 0``, counted for the report); ``difficult`` is all False.
    - Evaluation targets keep every face in file order and add bool ``[M]`` masks ``easy``,
      ``medium``, ``hard`` from the official lists (``gt_dir``); ``difficult`` marks faces
      that count in no setting, so COCO-style metrics ignore them as the official protocol does.
      An image without faces that the lists store as one all-zero box keeps that box (counting
      in no setting), so it is scored as the official evaluation scores it.
      Images missing from the official lists are left out of the split.

    Args:
        root: the WIDER FACE folder (see the module docstring).
        subset: ``train`` or ``val``.
        train: build training targets (see above).
        gt_dir: a folder of the official ``.mat`` lists, searched before :data:`GT_DIRS`.
        skip_bad: skip malformed annotation records (their messages land in ``skipped``).
    """

    pixel_offset = 0

    def __init__(
        self,
        root: str | Path,
        subset: str = "val",
        train: bool = False,
        gt_dir: str | Path | None = None,
        skip_bad: bool = False,
    ):
        self.root = Path(root).expanduser()
        self.subset = subset
        self.train = train
        self.images = images_dir(self.root, subset)
        self.records, self.skipped = parse_wider_annotations(
            annotation_file(self.root, subset), skip_bad
        )
        self.settings: dict[str, dict[str, np.ndarray]] = {}
        self.zero_rows: set[str] = set()  # images the lists give one all-zero box (evaluation)
        self.left_out = 0  # images of an evaluation split missing from the official lists
        if not train and subset != "val":
            raise UserError(
                f"WIDER FACE {subset} cannot be an evaluation split: the official easy/medium/hard "
                "lists exist for val only; set data.val and data.test to val"
            )
        if not train:
            self._attach_settings(find_eval_lists(self.root, gt_dir))

    def _attach_settings(self, paths: dict[str, Path]) -> None:
        table = read_setting_lists(paths)
        kept = []
        for record in self.records:
            listed = table.get(record.key)
            if listed is None:
                continue
            if listed.faces != len(record.boxes):
                raise UserError(
                    f"{paths['wider_face_val.mat']} lists {listed.faces} faces for {record.key} "
                    f"but {annotation_file(self.root, self.subset)} line {record.line} has "
                    f"{len(record.boxes)}; use the annotations and evaluation kit of one release"
                )
            self.settings[record.key] = listed.keep
            if listed.zero_row:
                self.zero_rows.add(record.key)
            kept.append(record)
        self.left_out = len(self.records) - len(kept)
        self.records = kept

    def __len__(self) -> int:
        return len(self.records)

    def image_path(self, index: int) -> Path:
        return self.images / self.records[index].path

    def image_size(self, index: int) -> tuple[int, int]:
        """``(width, height)`` read from the image header."""
        return image_size(self.image_path(index))

    def target(self, index: int) -> dict[str, Tensor | str]:
        """The target before clipping (see the class docstring)."""
        record = self.records[index]
        xywh = torch.as_tensor(record.boxes, dtype=torch.float32).reshape(-1, 4)
        invalid = torch.as_tensor(record.attributes[:, ATTRIBUTES.index("invalid")] != 0)
        if record.key in self.zero_rows:  # scored as the official lists store it (module doc)
            xywh, invalid = torch.zeros(1, 4), torch.zeros(1, dtype=torch.bool)
        boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
        target: dict[str, Tensor | str] = {
            "boxes": boxes,
            "labels": torch.ones(len(boxes), dtype=torch.int64),
            "invalid": invalid.reshape(-1),
        }
        if self.train:
            target = select(target, ~target["invalid"])
            target["difficult"] = torch.zeros(len(target["boxes"]), dtype=torch.bool)
        else:
            for setting, keep in self.settings[record.key].items():
                mask = torch.zeros(len(boxes), dtype=torch.bool)
                mask[torch.as_tensor(keep[(keep >= 0) & (keep < len(boxes))])] = True
                target[setting] = mask
            target["difficult"] = ~(target["easy"] | target["medium"] | target["hard"])
        target["image_id"] = record.key
        return target

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor | str]]:
        target = self.target(index)
        path = self.image_path(index)
        if not path.is_file():
            raise BadSampleError(
                f"image not found: {path} (listed in {annotation_file(self.root, self.subset)} "
                f"line {self.records[index].line})"
            )
        image = load_rgb_image(path)
        return image, clean_target(target, image.shape[-1], image.shape[-2], self.train)
