"""What the Gradio app does, as plain functions the UI calls and the tests drive.

``app.py`` only lays out components and wires events to these handlers; every computation goes
through the library (pipeline, registry, metrics, hints). Handlers raise
:class:`~deepcolor.errors.DeepColorError` with a readable message; :func:`~.common.user_errors`
turns those into ``gr.Error`` for the UI.
"""

from .models import ModelCatalog, ModelStatus
from .settings import AppSettings

__all__ = ["AppSettings", "ModelCatalog", "ModelStatus"]
