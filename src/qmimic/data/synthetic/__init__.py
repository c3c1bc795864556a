"""The built-in generated datasets (``shapes``, ``faces``) and their cache."""

from qmimic.data.synthetic.faces import FacesSpec, ensure_faces
from qmimic.data.synthetic.shapes import SHAPES_CLASSES, ShapesSpec, ensure_shapes
from qmimic.data.synthetic.sources import FacesSource, ShapesSource

__all__ = [
    "SHAPES_CLASSES",
    "FacesSource",
    "FacesSpec",
    "ShapesSource",
    "ShapesSpec",
    "ensure_faces",
    "ensure_shapes",
]
