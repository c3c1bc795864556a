"""``shapes``: a built-in detection dataset, generated once and stored in the Pascal VOC layout.

Each class is a (shape, texture) pair, so neither outline nor texture alone names the class, and
colours are random everywhere, so colour says nothing. Clutter makes it a real detection problem:
distractors carry a class shape with a non-class texture or a class texture on a non-class shape,
backgrounds are textured, objects range from a few pixels to half the image and occlude each
other. Objects that are tiny or mostly hidden are marked ``difficult`` (ignored by evaluation).

Generation is deterministic in ``seed``: image ``i`` of a split uses its own random stream, so the
files do not depend on how many images came before. The tree is written to a temporary folder and
renamed into place at the end, so an interrupted run never leaves a half-written dataset.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from qmimic.data.synthetic.cache import spec_key, write_once
from qmimic.data.voc.annotations import voc_year_dir

SHAPES = ("circle", "square", "triangle")
TEXTURES = ("striped", "checkered")
SHAPES_CLASSES = tuple(f"{texture}_{shape}" for texture in TEXTURES for shape in SHAPES)
DISTRACTOR_SHAPES = ("cross", "ring", "diamond")
DISTRACTOR_TEXTURES = ("plain", "speckled")
GENERATOR_VERSION = 1  # bump when the pictures change, so old caches are not reused


@dataclass(frozen=True)
class ShapesSpec:
    """Everything that determines the generated files."""

    num_train: int = 1600
    num_val: int = 160
    num_test: int = 400
    image_size: int = 192
    min_object_size: int = 10
    max_object_size: int = 96
    objects_per_image: tuple[int, int] = (2, 6)
    distractors_per_image: tuple[int, int] = (1, 4)
    difficult_below: int = 16
    seed: int = 0

    def key(self) -> str:
        """Short stable digest naming the cache folder of this spec."""
        return spec_key(self, GENERATOR_VERSION)


# ----------------------------------------------------------------------------- drawing


def _polygon(shape: str, cx: float, cy: float, size: float, angle: float) -> list[tuple]:
    r = size / 2
    if shape == "square":
        corners = [(-r, -r), (r, -r), (r, r), (-r, r)]
    elif shape == "diamond":
        corners = [(0, -r), (0.6 * r, 0), (0, r), (-0.6 * r, 0)]
    elif shape == "triangle":
        corners = [
            (r * math.cos(a), r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)
        ]
    elif shape == "cross":
        a, b = r, r / 3
        corners = [(-b, -a), (b, -a), (b, -b), (a, -b), (a, b), (b, b), (b, a), (-b, a),
                   (-b, b), (-a, b), (-a, -b), (-b, -b)]  # fmt: skip
    else:
        raise ValueError(shape)
    cos, sin = math.cos(angle), math.sin(angle)
    return [(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in corners]


def _shape_mask(
    shape: str, size: int, cx: float, cy: float, extent: float, angle: float
) -> np.ndarray:
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    r = extent / 2
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    elif shape == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        draw.ellipse((cx - r / 2, cy - r / 2, cx + r / 2, cy + r / 2), fill=0)
    else:
        draw.polygon(_polygon(shape, cx, cy, extent, angle), fill=255)
    return np.asarray(canvas) > 127


def _colour_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two random colours far enough apart for a texture to be visible."""
    while True:
        a, b = rng.uniform(0, 255, size=(2, 3))
        if np.abs(a - b).sum() > 180:
            return a, b


def _texture(kind: str, size: int, period: float, rng: np.random.Generator) -> np.ndarray:
    """A ``[size, size, 3]`` float texture."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(0, math.pi)
    u = xx * math.cos(angle) + yy * math.sin(angle)
    v = -xx * math.sin(angle) + yy * math.cos(angle)
    a, b = _colour_pair(rng)
    if kind == "striped":
        select = (np.floor(u / period) % 2).astype(bool)
    elif kind == "checkered":
        select = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(bool)
    elif kind == "plain":
        select = np.zeros((size, size), dtype=bool)
    elif kind == "speckled":
        select = rng.random((size, size)) < 0.3
    else:
        raise ValueError(kind)
    return np.where(select[..., None], a, b)


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """Low-frequency colour field, faint texture patches and thin lines, plus pixel noise."""
    coarse = Image.fromarray(rng.uniform(40, 215, size=(5, 5, 3)).astype(np.uint8))
    image = np.asarray(coarse.resize((size, size), Image.BICUBIC), dtype=np.float32)
    for _ in range(rng.integers(1, 4)):
        x0, y0 = rng.integers(0, size - 16, size=2)
        w, h = rng.integers(16, size // 2, size=2)
        patch = _texture(rng.choice(TEXTURES), size, rng.uniform(2, 6), rng)
        region = (slice(y0, y0 + h), slice(x0, x0 + w))
        image[region] = 0.75 * image[region] + 0.25 * patch[region]
    canvas = Image.fromarray(image.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(3, 9)):
        xy = tuple(rng.uniform(0, size, size=4))
        draw.line(
            xy, fill=tuple(int(c) for c in rng.uniform(0, 255, 3)), width=int(rng.integers(1, 3))
        )
    image = np.asarray(canvas, dtype=np.float32)
    return image + rng.normal(0, 6, size=image.shape)


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


@dataclass
class _Placed:
    label: str | None  # None for a distractor
    mask: np.ndarray
    extent: float


def _place(
    spec: ShapesSpec,
    rng: np.random.Generator,
    shape: str,
    texture: str,
    image: np.ndarray,
    owner: np.ndarray,
    index: int,
) -> _Placed:
    size = spec.image_size
    extent = _log_uniform(rng, spec.min_object_size, spec.max_object_size)
    cx, cy = rng.uniform(extent * 0.3, size - extent * 0.3, size=2)
    mask = _shape_mask(shape, size, cx, cy, extent, rng.uniform(0, 2 * math.pi))
    period = float(np.clip(extent / rng.uniform(4, 7), 2.0, 10.0))
    image[mask] = _texture(texture, size, period, rng)[mask]
    owner[mask] = index
    label = f"{texture}_{shape}" if shape in SHAPES and texture in TEXTURES else None
    return _Placed(label, mask, extent)


def render_image(spec: ShapesSpec, rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
    """One image ``[S, S, 3]`` uint8 and its VOC objects (name, 1-based box, difficult)."""
    size = spec.image_size
    image = _background(size, rng)
    owner = np.full((size, size), -1, dtype=np.int32)
    kinds = [
        (str(rng.choice(SHAPES)), str(rng.choice(TEXTURES)))
        for _ in range(rng.integers(*spec.objects_per_image, endpoint=True))
    ]
    for _ in range(rng.integers(*spec.distractors_per_image, endpoint=True)):
        if rng.random() < 0.5:
            kinds.append((str(rng.choice(SHAPES)), str(rng.choice(DISTRACTOR_TEXTURES))))
        else:
            kinds.append((str(rng.choice(DISTRACTOR_SHAPES)), str(rng.choice(TEXTURES))))
    order = rng.permutation(len(kinds))
    placed = [_place(spec, rng, *kinds[k], image, owner, i) for i, k in enumerate(order)]
    objects = []
    for i, item in enumerate(placed):
        if item.label is None:
            continue
        visible = owner == i
        area = int(item.mask.sum())
        seen = int(visible.sum())
        if area == 0 or seen < 0.25 * area or seen < 4:
            continue  # hidden: not annotated, as VOC annotators would not see it
        ys, xs = np.nonzero(visible)
        box = (int(xs.min()) + 1, int(ys.min()) + 1, int(xs.max()) + 1, int(ys.max()) + 1)
        small = max(box[2] - box[0], box[3] - box[1]) + 1 < spec.difficult_below
        objects.append({"name": item.label, "box": box, "difficult": small or seen < 0.5 * area})
    return image.clip(0, 255).astype(np.uint8), objects


# ----------------------------------------------------------------------------- writing


def _annotation_xml(image_id: str, size: int, objects: list[dict]) -> ET.ElementTree:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2007"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    dims = ET.SubElement(root, "size")
    for tag, value in (("width", size), ("height", size), ("depth", 3)):
        ET.SubElement(dims, tag).text = str(value)
    for obj in objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj["name"]
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = "0"
        ET.SubElement(node, "difficult").text = str(int(obj["difficult"]))
        box = ET.SubElement(node, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), obj["box"], strict=True):
            ET.SubElement(box, tag).text = str(value)
    ET.indent(root)
    return ET.ElementTree(root)


def _write_tree(spec: ShapesSpec, root: Path) -> None:
    year_dir = voc_year_dir(root, 2007)
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (year_dir / sub).mkdir(parents=True, exist_ok=True)
    splits = {"train": spec.num_train, "val": spec.num_val, "test": spec.num_test}
    ids: dict[str, list[str]] = {}
    progress = tqdm(total=sum(splits.values()), desc="generating shapes", unit="img")
    for split_index, (split, count) in enumerate(splits.items()):
        ids[split] = []
        for i in range(count):
            image_id = f"{split}_{i:06d}"
            rng = np.random.default_rng([spec.seed, split_index, i])
            pixels, objects = render_image(spec, rng)
            Image.fromarray(pixels).save(year_dir / "JPEGImages" / f"{image_id}.jpg", quality=92)
            _annotation_xml(image_id, spec.image_size, objects).write(
                year_dir / "Annotations" / f"{image_id}.xml"
            )
            ids[split].append(image_id)
            progress.update()
    progress.close()
    ids["trainval"] = ids["train"] + ids["val"]
    for split, names in ids.items():
        (year_dir / "ImageSets" / "Main" / f"{split}.txt").write_text(
            "".join(f"{n}\n" for n in names)
        )
    (root / "shapes.json").write_text(json.dumps({**asdict(spec), "classes": SHAPES_CLASSES}))


def ensure_shapes(cache_dir: str | Path, spec: ShapesSpec) -> Path:
    """Root of the VOC-layout tree for ``spec`` under ``cache_dir``, generating it if needed.

    Raises:
        UserError: ``cache_dir`` cannot be created or written.
    """
    return write_once(
        cache_dir, f"shapes-{spec.key()}", "shapes.json", lambda staging: _write_tree(spec, staging)
    )
