"""Any dataset in COCO JSON (``data=coco``): the way to bring your own data."""

from qmimic.data.coco.annotations import CocoCategories, CocoDataset, read_coco
from qmimic.data.coco.sources import CocoSource

__all__ = ["CocoCategories", "CocoDataset", "CocoSource", "read_coco"]
