"""Reading image files, with errors that name the file."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms.functional import pil_to_tensor

from qmimic.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")  # what find_images picks up, any case


class BadSampleError(UserError):
    """A single image or annotation file that cannot be read; names the file.

    ``data.on_bad_sample=skip`` skips such samples (see :mod:`qmimic.data.bad_samples`).
    """

    def __str__(self) -> str:
        text = super().__str__()
        # A DataLoader worker re-raises as ``BadSampleError("Caught ... Original Traceback ...
        # BadSampleError: <message>")``; the user needs the message, not the worker's traceback.
        marker = f"{type(self).__name__}: "
        if text.startswith("Caught ") and "Original Traceback" in text and marker in text:
            return text.rsplit(marker, 1)[1].strip()
        return text


def load_rgb_image(path: str | Path) -> Tensor:
    """Image as float ``[3, H, W]`` in [0, 1]; grayscale and palette files become RGB."""
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise BadSampleError(f"cannot read image {path}: {exc}") from None
    return pil_to_tensor(rgb).float().div_(255.0)


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` from the image header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError) as exc:
        raise BadSampleError(f"cannot read image {path}: {exc}") from None


def find_images(pattern: str) -> list[Path]:
    """Image files (:data:`IMAGE_SUFFIXES`, any case) in a folder or matching a glob, sorted.

    Raises:
        UserError: nothing found.
    """
    folder = Path(pattern).expanduser()
    if folder.is_dir():
        candidates = [str(p) for p in folder.iterdir()]
    else:
        candidates = glob.glob(os.path.expanduser(pattern), recursive=True)
    images = sorted(Path(p) for p in candidates if Path(p).suffix.lower() in IMAGE_SUFFIXES)
    images = [p for p in images if p.is_file()]
    if not images:
        raise UserError(
            f"no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}) found at {pattern}; pass a "
            "folder or a glob, e.g. input=photos or input='photos/**/*.jpg'"
        )
    return images
