"""The ``torch`` backend: the model runs itself, on any device, in any dtype."""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from ..models.base import Colorizer


class TorchBackend:
    """``model.predict`` under inference mode, with autocast for a reduced dtype."""

    name = "torch"

    def __init__(self, model: Colorizer, device: torch.device, dtype: torch.dtype) -> None:
        self.model, self.device, self.dtype = model, device, dtype
        #: one line for the user when the choice needs saying (a fallback), else empty
        self.note = ""

    def _autocast(self):
        """Reduced precision through autocast: weights stay float32, matmuls/convs run in dtype."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def predict(self, L_work: torch.Tensor, conditions: dict[str, Any]) -> torch.Tensor:
        with torch.inference_mode(), self._autocast():
            return self.model.predict(L_work, **conditions)

    def run(self, method: str, *args: Any) -> Any:
        """Another of the model's inference methods (e.g. ``bin_distribution``), the same way."""
        with torch.inference_mode(), self._autocast():
            return getattr(self.model, method)(*args)
