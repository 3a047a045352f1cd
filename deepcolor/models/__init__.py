"""Every model file; importing this package registers them all.

A model is one file. Add a new one to ``_MODEL_MODULES``.
"""

from importlib import import_module

from .base import Colorizer

_MODEL_MODULES = (
    "baselines",
    "eccv16",
    "siggraph17",
    "controlnet",
    "unet",
    "fusion",
    "exemplar",
    "blend",
    "ddcolor",
)

for _module in _MODEL_MODULES:
    import_module(f"{__name__}.{_module}")

__all__ = ["Colorizer"]
