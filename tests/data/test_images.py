"""Reading image files: what the loaders feed the model, and the error for a broken file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor

from qmimic.data.images import BadSampleError, load_rgb_image


def photo_like(seed: int, size: tuple[int, int] = (96, 64)) -> Image.Image:
    """A noisy RGB picture with smooth parts, as a camera JPEG has both."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.linspace(0, 255, size[0]).expand(size[1], size[0])
    noise = torch.randint(0, 60, (3, size[1], size[0]), generator=generator)
    pixels = (base[None] * 0.7 + noise).clamp(0, 255).to(torch.uint8)
    return Image.fromarray(pixels.permute(1, 2, 0).numpy())


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("suffix", [".jpg", ".JPEG", ".png"])
def test_every_format_gives_its_pixels_as_rgb_floats(mode: str, suffix: str, tmp_path: Path):
    path = tmp_path / f"photo{suffix}"
    photo_like(1).convert(mode).save(path, format="JPEG" if "jp" in suffix.lower() else "PNG")
    with Image.open(path) as image:
        expected = pil_to_tensor(image.convert("RGB"))
    loaded = load_rgb_image(path)
    assert loaded.dtype == torch.float32 and loaded.shape == (3, 64, 96)
    assert torch.equal((loaded * 255).round().to(torch.uint8), expected)


def test_a_truncated_or_foreign_jpeg_is_a_bad_sample_naming_the_file(tmp_path: Path):
    whole = tmp_path / "whole.jpg"
    photo_like(2, (400, 300)).save(whole, quality=95)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    foreign = tmp_path / "notes.jpg"
    foreign.write_text("not a picture")
    for path in (truncated, foreign):
        with pytest.raises(BadSampleError, match=f"cannot read image {path}"):
            load_rgb_image(path)
