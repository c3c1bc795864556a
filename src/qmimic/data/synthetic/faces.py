"""``faces``: a built-in face detection set, generated once and stored in the WIDER FACE layout.

So the WIDER FACE path (annotation text, official ``.mat`` setting lists, easy/medium/hard
metric) runs end to end without a download, as ``shapes`` does for Pascal VOC.

Faces are drawn procedurally: an elliptic head in one of many skin tones, hair, eyes, brows, nose
and mouth, at sizes from a few pixels to half the image, some blurred, darkened, turned or
partly hidden behind an occluder. Backgrounds are textured and hold face-like distractors (plain
skin-coloured ovals, round things with two dots). Attributes follow WIDER FACE (blur 0-2,
occlusion 0-2, illumination, pose, invalid), and so do the settings, nested like WIDER's:

- easy: valid faces at least ``easy_min`` px tall, clear and unoccluded;
- medium: easy plus faces at least ``medium_min`` px tall with at most partial blur/occlusion;
- hard: every valid face (small, heavily blurred or occluded faces count only here).

A few faces are drawn nearly unrecognisable and flagged ``invalid``: in no setting, and left out
of training targets, as in WIDER FACE. A few images hold no face at all; they are written as the
release writes them (both spellings of the annotation text, one all-zero box in the lists).

Generation is deterministic in ``seed`` (image ``i`` of a split has its own random stream), and
the tree is written to a temporary folder renamed into place at the end.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy.io import savemat
from tqdm import tqdm

from qmimic.data.synthetic.cache import spec_key, write_once
from qmimic.data.widerface.annotations import SETTINGS, annotation_file, images_dir

EVENTS = ("0--Street", "1--Park", "2--Meeting", "3--Party", "4--Sports")
GENERATOR_VERSION = 2  # bump when the pictures change, so old caches are not reused
SKIN = np.array(
    [[255, 224, 196], [241, 194, 160], [224, 172, 105], [198, 134, 66], [141, 85, 36],
     [94, 58, 30], [255, 205, 148], [234, 192, 134]], dtype=np.float64,
)  # fmt: skip
MARKER = "faces.json"


@dataclass(frozen=True)
class FacesSpec:
    """Everything that determines the generated files (sizes in pixels; ``image_size`` is the
    longer side, the shorter one is 3/4 to 1 of it)."""

    num_train: int = 1000
    num_val: int = 200
    image_size: int = 192
    min_face: int = 6
    max_face: int = 96
    faces_per_image: tuple[int, int] = (1, 6)
    distractors_per_image: tuple[int, int] = (1, 3)
    empty_fraction: float = 0.05
    invalid_fraction: float = 0.05
    easy_min: int = 32
    medium_min: int = 16
    seed: int = 0

    def key(self) -> str:
        """Short stable digest naming the cache folder of this spec."""
        return spec_key(self, GENERATOR_VERSION)


@dataclass
class Face:
    """One drawn face: box ``(x, y, w, h)`` and WIDER FACE attributes."""

    box: tuple[int, int, int, int]
    blur: int = 0
    expression: int = 0
    illumination: int = 0
    invalid: int = 0
    occlusion: int = 0
    pose: int = 0

    def line(self) -> str:
        values = (*self.box, self.blur, self.expression, self.illumination, self.invalid,
                  self.occlusion, self.pose)  # fmt: skip
        return " ".join(str(int(v)) for v in values) + " "

    def settings(self, spec: FacesSpec) -> dict[str, bool]:
        height = self.box[3]
        hard = not self.invalid
        medium = hard and height >= spec.medium_min and self.blur < 2 and self.occlusion < 2
        easy = medium and height >= spec.easy_min and self.blur == 0 and self.occlusion == 0
        return {"easy": easy, "medium": medium, "hard": hard}


# ----------------------------------------------------------------------------- drawing


def _colour(rng: np.random.Generator, low: float = 0, high: float = 255) -> tuple[int, ...]:
    return tuple(int(c) for c in rng.uniform(low, high, 3))


def _background(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """Low-frequency colour field with stripes, boxes and lines."""
    coarse = Image.fromarray(rng.uniform(30, 225, size=(4, 4, 3)).astype(np.uint8))
    canvas = coarse.resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(2, 6)):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        w, h = rng.uniform(8, width / 2), rng.uniform(8, height / 2)
        draw.rectangle((x0, y0, x0 + w, y0 + h), fill=_colour(rng, 20, 235))
    for _ in range(rng.integers(3, 10)):
        xy = (rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0, width),
              rng.uniform(0, height))  # fmt: skip
        draw.line(xy, fill=_colour(rng), width=int(rng.integers(1, 4)))
    return canvas


def _skin(rng: np.random.Generator) -> tuple[int, ...]:
    tone = SKIN[rng.integers(len(SKIN))] * rng.uniform(0.85, 1.1)
    return tuple(int(c) for c in np.clip(tone, 0, 255))


def _draw_face(draw: ImageDraw.ImageDraw, box: tuple, rng: np.random.Generator, turn: float):
    """Head, hair and features inside ``box`` (x0, y0, x1, y1); ``turn`` in [-1, 1] shifts the
    features sideways as a head turning away would."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    skin = _skin(rng)
    hair = _colour(rng, 0, 120)
    draw.ellipse((x0 - 0.05 * w, y0 - 0.12 * h, x1 + 0.05 * w, y0 + 0.55 * h), fill=hair)
    draw.ellipse(box, fill=skin)
    cx, shift = (x0 + x1) / 2, turn * 0.15 * w
    dark = tuple(int(c * 0.55) for c in skin)
    for side in (-1, 1):
        ex, ey, r = cx + shift + side * 0.2 * w, y0 + 0.42 * h, max(0.08 * w, 0.6)
        draw.ellipse((ex - r, ey - 0.7 * r, ex + r, ey + 0.7 * r), fill=(245, 245, 245))
        draw.ellipse((ex - r / 2, ey - r / 2, ex + r / 2, ey + r / 2), fill=_colour(rng, 0, 90))
        draw.line((ex - r, ey - 1.6 * r, ex + r, ey - 1.8 * r), fill=hair, width=max(1, int(r / 2)))
    ny = y0 + 0.6 * h
    draw.line((cx + shift, y0 + 0.45 * h, cx + shift + 0.05 * w, ny), fill=dark, width=1)
    mw, my = 0.18 * w, y0 + 0.76 * h
    mouth = (int(150 + rng.uniform(0, 80)), int(40 + rng.uniform(0, 40)), 50)
    draw.chord((cx + shift - mw, my - 0.06 * h, cx + shift + mw, my + 0.06 * h), 0, 180, fill=mouth)


def _draw_distractor(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int):
    size = rng.uniform(8, min(width, height) / 3)
    x0, y0 = rng.uniform(0, width - size), rng.uniform(0, height - size)
    box = (x0, y0, x0 + 0.8 * size, y0 + size)
    if rng.random() < 0.5:  # a plain skin-coloured oval: a face without features
        draw.ellipse(box, fill=_skin(rng))
    else:  # a round thing with two dots side by side
        draw.ellipse(box, fill=_colour(rng))
        r = 0.08 * size
        for dx in (0.25, 0.55):
            cx, cy = x0 + dx * size, y0 + rng.uniform(0.2, 0.8) * size
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=_colour(rng, 0, 80))


def _place(spec: FacesSpec, rng: np.random.Generator, width: int, height: int, taken: list):
    """A face box ``(x0, y0, x1, y1)`` inside the image overlapping earlier faces little."""
    for _ in range(20):
        fh = math.exp(rng.uniform(math.log(spec.min_face), math.log(spec.max_face)))
        fh = min(fh, 0.9 * height)
        fw = fh * rng.uniform(0.7, 0.85)
        x0, y0 = rng.uniform(0, width - fw), rng.uniform(0, height - fh)
        box = (x0, y0, x0 + fw, y0 + fh)
        if all(_overlap(box, other) < 0.2 for other in taken):
            return box
    return None


def _overlap(a: tuple, b: tuple) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return iw * ih / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def _occlude(draw: ImageDraw.ImageDraw, box: tuple, rng: np.random.Generator, level: int):
    """Cover a part of the face: up to a third (level 1) or about half or more (level 2)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    share = rng.uniform(0.15, 0.33) if level == 1 else rng.uniform(0.45, 0.7)
    side = rng.integers(4)
    if side == 0:
        cover = (x0 - 2, y1 - share * h, x1 + 2, y1 + 2)
    elif side == 1:
        cover = (x0 - 2, y0 - 2, x1 + 2, y0 + share * h)
    elif side == 2:
        cover = (x0 - 2, y0 - 2, x0 + share * w, y1 + 2)
    else:
        cover = (x1 - share * w, y0 - 2, x1 + 2, y1 + 2)
    draw.rectangle(cover, fill=_colour(rng))


def render_image(spec: FacesSpec, rng: np.random.Generator) -> tuple[np.ndarray, list[Face]]:
    """One image ``[H, W, 3]`` uint8 and its faces (WIDER boxes: x, y, w, h; ``x2 = x + w``)."""
    long, short = spec.image_size, int(spec.image_size * rng.uniform(0.75, 1.0))
    width, height = (long, short) if rng.random() < 0.5 else (short, long)
    image = _background(width, height, rng)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(*spec.distractors_per_image, endpoint=True)):
        _draw_distractor(draw, rng, width, height)
    count = (
        0
        if rng.random() < spec.empty_fraction
        else rng.integers(*spec.faces_per_image, endpoint=True)
    )
    taken, faces = [], []
    for _ in range(count):
        box = _place(spec, rng, width, height, taken)
        if box is None:
            continue
        taken.append(box)
        faces.append(_render_face(spec, image, box, rng))
    pixels = np.asarray(image, dtype=np.float64) + rng.normal(0, 4, size=(height, width, 3))
    return pixels.clip(0, 255).astype(np.uint8), faces


def _render_face(spec: FacesSpec, image: Image.Image, box: tuple, rng: np.random.Generator):
    draw = ImageDraw.Draw(image)
    turn = rng.uniform(-1, 1)
    _draw_face(draw, box, rng, turn)
    x0, y0, x1, y1 = box
    invalid = int(rng.random() < spec.invalid_fraction)
    occlusion = 0 if invalid else int(rng.choice(3, p=(0.7, 0.2, 0.1)))
    if occlusion:
        _occlude(draw, box, rng, occlusion)
    blur = 2 if invalid else int(rng.choice(3, p=(0.75, 0.17, 0.08)))
    illumination = int(rng.random() < 0.15)
    region = tuple(int(v) for v in (max(x0 - 3, 0), max(y0 - 3, 0), x1 + 3, y1 + 3))
    crop = image.crop(region)
    if blur:
        crop = crop.filter(ImageFilter.GaussianBlur((y1 - y0) * (0.04 if blur == 1 else 0.12)))
    if illumination or invalid:  # darkened, or washed out to near invisibility
        grey = Image.new("RGB", crop.size, (40, 40, 40) if illumination else (128, 128, 128))
        crop = Image.blend(crop, grey, 0.5 if illumination else 0.8)
    image.paste(crop, region[:2])
    x, y = round(x0), round(y0)
    box_xywh = (x, y, round(x1) - x, round(y1) - y)
    return Face(box_xywh, blur, 0, illumination, invalid, occlusion, int(abs(turn) > 0.7))


# ----------------------------------------------------------------------------- writing


def _cells(items: list) -> np.ndarray:
    """A MATLAB cell column (``[n, 1]`` object array) holding ``items``."""
    cells = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        cells[i, 0] = item
    return cells


def write_setting_lists(folder: Path, spec: FacesSpec, records: list[tuple[str, list[Face]]]):
    """The official evaluation files for ``records`` (``<event>/<name>.jpg``, faces)."""
    by_event: dict[str, list[tuple[str, list[Face]]]] = {e: [] for e in EVENTS}
    for path, faces in records:
        event, name = path.split("/")
        by_event[event].append((Path(name).stem, faces))
    events = [e for e in EVENTS if by_event[e]]
    # An image without faces gets one all-zero box, as the released lists store it.
    face_bbx = [
        _cells([np.array([f.box for f in faces] or [(0, 0, 0, 0)], dtype=np.float64)
                for _, faces in by_event[e]])
        for e in events
    ]  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    savemat(
        folder / "wider_face_val.mat",
        {
            "event_list": _cells(events),
            "file_list": _cells([_cells([n for n, _ in by_event[e]]) for e in events]),
            "face_bbx_list": _cells(face_bbx),
        },
    )
    for setting in SETTINGS:
        gt_list = [
            _cells([np.array([k + 1 for k, f in enumerate(faces) if f.settings(spec)[setting]],
                             dtype=np.int32).reshape(-1, 1) for _, faces in by_event[e]])
            for e in events
        ]  # fmt: skip
        savemat(folder / f"wider_{setting}_val.mat", {"gt_list": _cells(gt_list)})


def _annotation_text(records: list[tuple[str, list[Face]]]) -> str:
    """The ``bbx_gt.txt`` text. Images without faces alternate between the two spellings of the
    released files: a count of 0, or of 1, before the line of zeros."""
    lines, empty = [], 0
    for path, faces in records:
        if faces:
            lines += [path, str(len(faces)), *(f.line() for f in faces)]
        else:
            lines += [path, str(empty % 2), "0 0 0 0 0 0 0 0 0 0 "]
            empty += 1
    return "\n".join(lines) + "\n"


def _write_tree(spec: FacesSpec, root: Path) -> None:
    progress = tqdm(total=spec.num_train + spec.num_val, desc="generating faces", unit="img")
    for split_index, (subset, count) in enumerate((("train", spec.num_train),
                                                   ("val", spec.num_val))):  # fmt: skip
        records = []
        for i in range(count):
            event = EVENTS[i % len(EVENTS)]
            path = f"{event}/{event.split('--')[1]}_{subset}_{i:06d}.jpg"
            pixels, faces = render_image(spec, np.random.default_rng([spec.seed, split_index, i]))
            target = images_dir(root, subset) / path
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(target, quality=92)
            records.append((path, faces))
            progress.update()
        annotation_file(root, subset).parent.mkdir(parents=True, exist_ok=True)
        annotation_file(root, subset).write_text(_annotation_text(records))
        if subset == "val":
            write_setting_lists(root / "eval_tools" / "ground_truth", spec, records)
    progress.close()
    (root / MARKER).write_text(json.dumps(asdict(spec)))


def ensure_faces(cache_dir: str | Path, spec: FacesSpec) -> Path:
    """Root of the WIDER-layout tree for ``spec`` under ``cache_dir``, generating it if needed.

    Raises:
        UserError: ``cache_dir`` cannot be created or written.
    """
    return write_once(
        cache_dir, f"faces-{spec.key()}", MARKER, lambda staging: _write_tree(spec, staging)
    )
