"""Choosing a backend: ``auto`` (OpenVINO on the CPU for the models it serves, else torch),
``torch`` or ``openvino``."""

from __future__ import annotations

import importlib.util
import os
from typing import Any, Protocol

import torch

from ..errors import InvalidCondition
from ..models.base import Colorizer
from .torch_backend import TorchBackend

BACKENDS = ("auto", "torch", "openvino", "openvino-int8")
#: the backend when none is named (default: auto)
BACKEND_ENV = "DEEPCOLOR_BACKEND"


class Backend(Protocol):
    """What the pipeline asks of a backend."""

    name: str
    note: str  # one line for the user when the choice needs saying (a fallback), else ""

    def predict(self, L_work: torch.Tensor, conditions: dict[str, Any]) -> torch.Tensor:
        """L at the working size -> ab there."""


def served_by_openvino(model: Colorizer) -> bool:
    """Whether the ``openvino`` backend runs ``model`` (a fixed working size, no conditions
    that change the graph, and outputs checked equal to torch's: ``Colorizer.exportable``)."""
    return bool(getattr(model, "exportable", False)) and model.working_size is not None


def _why_not_openvino(
    model: Colorizer, device: torch.device, dtype: torch.dtype, int8: bool = False
) -> str:
    if not served_by_openvino(model):
        return f"model {model.name!r} is not served by it (it serves the DDColor models)"
    if int8 and not getattr(model, "int8_keeps_colours", False):
        return (
            "int8 is offered only where it was measured to keep the colours (the DDColor "
            "models); use backend 'openvino' (float32)"
        )
    if device.type != "cpu":
        return f"it runs on the CPU, and this pipeline runs on {device.type}"
    if dtype != torch.float32:
        return f"it runs in float32, and this pipeline is set to {str(dtype).split('.')[-1]}"
    if importlib.util.find_spec("openvino") is None:
        return "the openvino package is not installed (pip install openvino)"
    return ""


def expected_backend(exportable: bool, device: torch.device) -> str:
    """The backend a model would get here without being built (``deepcolor models``): the
    setting if it names one, else what ``auto`` picks for a model that is or is not
    ``exportable``, on ``device`` in float32."""
    setting = os.environ.get(BACKEND_ENV, "").strip() or "auto"
    if setting != "auto":
        return setting
    openvino_here = importlib.util.find_spec("openvino") is not None
    return "openvino" if exportable and device.type == "cpu" and openvino_here else "torch"


def create_backend(
    model: Colorizer, name: str | None, device: torch.device, dtype: torch.dtype
) -> Backend:
    """The backend ``name`` for ``model`` (``None``: ``DEEPCOLOR_BACKEND``, else ``auto``).

    ``auto`` takes OpenVINO where it can run the model and torch elsewhere; an explicit
    ``openvino`` that cannot is an :class:`InvalidCondition` saying why. An export that fails
    falls back to torch, with a note saying so.
    """
    setting = "" if name else os.environ.get(BACKEND_ENV, "").strip()
    name = name or setting or "auto"
    if name not in BACKENDS:
        where = f"{BACKEND_ENV}={setting}: " if setting else ""
        raise InvalidCondition(
            f"{where}unknown backend {name!r}; choose from {', '.join(BACKENDS)}"
        )
    if name == "torch":
        return TorchBackend(model, device, dtype)
    reason = _why_not_openvino(model, device, dtype, int8=name == "openvino-int8")
    if reason:
        if name != "auto":
            raise InvalidCondition(f"backend {name!r} cannot run {model.name}: {reason}")
        return TorchBackend(model, device, dtype)
    from .exports import ExportFailed
    from .openvino_backend import OpenVINOBackend

    try:
        return OpenVINOBackend(model, int8=name == "openvino-int8")
    except ExportFailed as exc:
        fallback = TorchBackend(model, device, dtype)
        fallback.note = f"could not export {model.name} for OpenVINO ({exc}); running it with torch"
        return fallback
