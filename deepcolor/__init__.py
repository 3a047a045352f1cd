"""DeepColor: grayscale photo colourisation, every method behind one interface.

Public API::

    from deepcolor import ColorizationPipeline, create_colorizer, list_colorizers, load_image
"""

from .errors import DeepColorError
from .factory import create_colorizer
from .images import load_image
from .pipeline import ColorizationPipeline, ColorizationResult
from .registry import colorizer_info, list_colorizers, register_colorizer

__version__ = "0.1.0"

__all__ = [
    "ColorizationPipeline",
    "ColorizationResult",
    "DeepColorError",
    "colorizer_info",
    "create_colorizer",
    "list_colorizers",
    "load_image",
    "register_colorizer",
]
