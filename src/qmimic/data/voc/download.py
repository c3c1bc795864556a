"""``data.download=true`` for Pascal VOC, through torchvision's downloader and archive list.

The official mirrors are often down; when a download fails the user gets the archive names and
the commands that place them by hand.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from torchvision.datasets.utils import download_and_extract_archive
from torchvision.datasets.voc import DATASET_YEAR_DICT

from qmimic.errors import UserError

YEARS = ("2007", "2012")


def archive_key(year: str, image_set: str) -> str:
    """torchvision's key for the archive holding ``(year, image_set)``: the VOC2007 test images
    ship in their own archive."""
    if year not in YEARS:
        raise UserError(f"Pascal VOC year {year} is not supported; use one of {', '.join(YEARS)}")
    return "2007-test" if year == "2007" and image_set == "test" else year


def manual_instructions(root: Path, entries: Iterable[tuple[str, str]]) -> str:
    """How to place the archives holding the ``(year, image_set)`` entries by hand, so that
    ``root/VOCdevkit/VOC<year>`` exists (years torchvision does not know are left out)."""
    keys = [
        "2007-test" if year == "2007" and image_set == "test" else year
        for year, image_set in entries
        if year in YEARS
    ]
    lines = [f"Place the archives in {root} by hand and extract them there:"]
    for key in dict.fromkeys(keys):
        entry = DATASET_YEAR_DICT[key]
        year = key.split("-")[0]
        lines.append(
            f"  VOC{year}{' test' if key.endswith('test') else ''}: {entry['filename']} "
            f"(from {entry['url']} or a mirror), then `tar -xf {root / entry['filename']} "
            f"-C {root}` -> {root}/VOCdevkit/VOC{year}/{{JPEGImages,Annotations,ImageSets/Main}}"
        )
    return "\n".join(lines)


def download_voc(root: Path, entries: Iterable[tuple[str, str]]) -> None:
    """Download and extract the archives of the ``(year, image_set)`` entries into ``root``.

    Raises:
        UserError: a download failed; the message says which and how to place the archives.
    """
    entries = list(entries)
    keys = list(dict.fromkeys(archive_key(year, image_set) for year, image_set in entries))
    for key in keys:
        entry = DATASET_YEAR_DICT[key]
        try:
            root.mkdir(parents=True, exist_ok=True)
            download_and_extract_archive(
                entry["url"], str(root), filename=entry["filename"], md5=entry["md5"]
            )
        # Any failure inside the third-party downloader (network, HTTP, checksum, disk) means
        # the same to the user: the archive did not arrive.
        except Exception as exc:  # noqa: BLE001
            raise UserError(
                f"downloading Pascal VOC ({entry['filename']}) failed: {exc}\n"
                + manual_instructions(root, entries)
                + "\nthen run again without data.download=true."
            ) from None
