"""LungSegAI core: headless lung and lung-infection segmentation for chest CT.

Nothing in this package imports Slicer; the 3D Slicer module (``LungSegAI/``) sits on top of it.
"""

__version__ = "0.1.0"

from lungseg_core.errors import LungSegError  # noqa: E402

__all__ = ["LungSegError", "__version__"]
