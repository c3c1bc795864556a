"""Sources of the built-in generated sets: ``shapes`` in the Pascal VOC layout and ``faces`` in
the WIDER FACE layout, each generated into the cache on first use and then read through the same
code as the real dataset."""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from qmimic.data.synthetic.cache import DEFAULT_CACHE, spec_fields
from qmimic.data.synthetic.faces import FacesSpec, ensure_faces
from qmimic.data.synthetic.shapes import SHAPES_CLASSES, ShapesSpec, ensure_shapes
from qmimic.data.voc.sources import VOCSource
from qmimic.data.widerface.sources import WiderFaceSource


class ShapesSource(VOCSource):
    """The built-in ``shapes`` dataset: generated into ``cache_dir`` on first use, then read
    through the same VOC code as real Pascal VOC."""

    def __init__(
        self,
        cache_dir: str | Path = DEFAULT_CACHE,
        spec: ShapesSpec | None = None,
        train_difficult: bool = False,
        **fields: object,
    ):
        self.spec = spec or ShapesSpec(**spec_fields(fields))
        self.cache_dir = Path(cache_dir).expanduser()
        root = self.cache_dir / f"shapes-{self.spec.key()}"
        splits = {"train": ["2007-train"], "val": ["2007-val"], "test": ["2007-test"]}
        super().__init__(root, splits, SHAPES_CLASSES, train_difficult)

    def prepare(self, splits: Collection[str] | None = None) -> None:
        """Generate the set on first use (all splits at once: they come from one seed)."""
        self._check_known(splits)
        self.root = ensure_shapes(self.cache_dir, self.spec)


class FacesSource(WiderFaceSource):
    """The built-in ``faces`` dataset: generated into ``cache_dir`` on first use in the WIDER FACE
    layout (evaluation lists included), then read through the same code as real WIDER FACE."""

    def __init__(
        self,
        cache_dir: str | Path = DEFAULT_CACHE,
        spec: FacesSpec | None = None,
        on_bad_sample: str = "raise",
        **fields: object,
    ):
        self.spec = spec or FacesSpec(**spec_fields(fields))
        self.cache_dir = Path(cache_dir).expanduser()
        super().__init__(self.cache_dir / f"faces-{self.spec.key()}", on_bad_sample=on_bad_sample)

    def prepare(self, splits: Collection[str] | None = None) -> None:
        """Generate the set on first use (all splits at once: they come from one seed)."""
        self.root = ensure_faces(self.cache_dir, self.spec)
