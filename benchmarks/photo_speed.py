"""Training on real photographs: JPEG decoding, the train loader, and step times.

Reads a Pascal VOC 2007 tree (``--root``, as ``data=voc_cpu`` takes it: ``VOCdevkit/VOC2007``)
and measures, in one process, one after the other:

- decoding: images per second of the first ``--images`` photos of ``2007-train`` read as the
  loader reads them (PIL, ``qmimic.data.images.load_rgb_image``) and by torchvision's
  ``decode_jpeg``, in interleaved rounds, and whether both give the same pixels;
- the train loader of the ``voc_cpu`` recipe (decoding, flips, collation; no model) at each
  ``--workers`` count, in images per second;
- on one real training batch of that loader: a student step, a teacher forward and a
  distillation step of the ``voc_cpu`` recipe's models (teacher ResNet-18 at width 1/4 with a
  feature quantizer, ResNet18-1-16 student; random weights), timed as ``distill_step.py`` does,
  with the ratio ``distill / (student + teacher)`` (target at most 1.15).

:func:`measure` returns the ``photos`` section of ``bench/results.json``.

    python benchmarks/photo_speed.py --root ~/data/voc2007-400 [--images 300] [--batches 50]
        [--workers 0 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import distill_step
import loader_speed
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torchvision.io import ImageReadMode, decode_jpeg, read_file

from qmimic.conf import load_config
from qmimic.data.images import load_rgb_image

ROUNDS = 3


def photo_files(root: Path, count: int) -> list[Path]:
    """The first ``count`` photos of the ``2007-train`` list under ``root``."""
    year = root.expanduser() / "VOCdevkit" / "VOC2007"
    ids = (year / "ImageSets" / "Main" / "train.txt").read_text().split()
    return [year / "JPEGImages" / f"{i}.jpg" for i in ids[:count]]


def torchvision_decode(path: Path) -> torch.Tensor:
    """``[3, H, W]`` float in [0, 1] by torchvision's JPEG decoder (deprecated since
    torchvision 0.29, which is why the loaders keep PIL; timed here for comparison)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        data = read_file(str(path))
        return decode_jpeg(data, mode=ImageReadMode.RGB).float().div_(255.0)


def decode_rates(files: Sequence[Path]) -> dict[str, Any]:
    """Images per second of each decoder over ``files`` (median of interleaved rounds), and
    whether they give the same pixels on every file."""
    decoders: dict[str, Callable[[Path], torch.Tensor]] = {
        "pil": load_rgb_image,
        "torchvision": torchvision_decode,
    }
    rates: dict[str, list[float]] = {name: [] for name in decoders}
    for _ in range(ROUNDS):
        for name, decode in decoders.items():
            start = time.perf_counter()
            for path in files:
                decode(path)
            rates[name].append(len(files) / (time.perf_counter() - start))
    same = all(torch.equal(load_rgb_image(p), torchvision_decode(p)) for p in files)
    return {
        "images": len(files),
        "pil_images_per_s": statistics.median(rates["pil"]),
        "torchvision_images_per_s": statistics.median(rates["torchvision"]),
        "same_pixels": same,
    }


def recipe_overrides(root: Path, stage: str, extra: Sequence[str] = ()) -> list[str]:
    """Train-config overrides of ``<stage>_voc_cpu`` on the tree at ``root``, then ``extra``."""
    return [f"+experiment={stage}_voc_cpu", f"data.root={root.expanduser()}", *extra]


def model_config(root: Path, stage: str, extra: Sequence[str] = ()) -> dict:
    """The ``model`` section of ``<stage>_voc_cpu`` (no weights are read)."""
    cfg = load_config("train", [*recipe_overrides(root, stage, extra), "model.pretrained=false"])
    return OmegaConf.to_container(cfg.model, resolve=True)


def real_batch(
    root: Path, extra: Sequence[str] = ()
) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """The first batch of the ``voc_cpu`` train loader (flips drawn with seed 0)."""
    cfg = load_config("train", [*recipe_overrides(root, "scratch", extra), "data.num_workers=0"])
    datamodule = instantiate(cfg.data.datamodule)
    datamodule.setup("fit")
    torch.manual_seed(0)
    images, targets = next(iter(datamodule.train_dataloader()))
    return list(images), list(targets)


def measure(
    root: Path,
    images: int = 300,
    batches: int = 50,
    workers: Sequence[int] = (0, 2),
    repeats: int = 15,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    """The ``photos`` section: ``decode``, ``loader`` (one row per worker count) and ``steps``
    (``distill_step.measure_on`` figures plus ``batch`` and ``sizes``), the load average at
    the start and the thread count. ``extra``: train-config overrides after the recipe's (a
    test's smaller inputs)."""
    load = os.getloadavg()[0]
    decode = decode_rates(photo_files(root, images))
    print(
        f"  decode {decode['images']} photos: PIL {decode['pil_images_per_s']:.0f}/s, "
        f"torchvision {decode['torchvision_images_per_s']:.0f}/s, same pixels "
        f"{decode['same_pixels']}",
        flush=True,
    )
    loader = []
    for count in workers:
        overrides = [*recipe_overrides(root, "scratch", extra), f"data.num_workers={count}"]
        row = loader_speed.measure(batches, overrides)
        print(f"  train loader, {count} workers: {row['images_per_s']:.1f} images/s", flush=True)
        loader.append(row)
    batch_images, targets = real_batch(root, extra)
    teacher, student = model_config(root, "teacher", extra), model_config(root, "scratch", extra)
    steps = distill_step.measure_on(teacher, student, batch_images, targets, repeats)
    print(
        f"  steps on a real batch: student {steps['student_ms']:.0f} ms, teacher forward "
        f"{steps['teacher_forward_ms']:.0f} ms, distillation {steps['distill_ms']:.0f} ms "
        f"(ratio {steps['ratio']:.3f})",
        flush=True,
    )
    sizes = [list(image.shape[-2:]) for image in batch_images]
    return {
        "load_average": load,
        "threads": torch.get_num_threads(),
        "decode": decode,
        "loader": loader,
        "steps": {**steps, "batch": len(batch_images), "sizes": sizes},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="holds VOCdevkit/VOC2007")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from report import photos_table

    section = measure(args.root, args.images, args.batches, args.workers, args.repeats)
    print(photos_table({"photos": section}))


if __name__ == "__main__":
    main()
