"""``Colorizer``: the one interface every model honours.

``predict(L, **conditions) -> ab``: ``L`` is ``(B, 1, H, W)`` CIELAB lightness in [0, 100], the
result ``(B, 2, H, W)`` CIELAB ab at the same size. Scaling a network wants happens inside the
model with the constants of :mod:`deepcolor.color`. Saving and loading go through
``PyTorchModelHubMixin`` (``save_pretrained`` / ``from_pretrained``; local folder or Hub id).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from ..errors import InvalidCondition
from ._layers import check_chroma_gain, check_temperature


class Colorizer(nn.Module, PyTorchModelHubMixin):
    """Base class of every colourisation model."""

    #: registry name
    name: ClassVar[str] = "colorizer"
    #: conditions that must be passed to ``predict``
    needs: ClassVar[tuple[str, ...]] = ()
    #: conditions that may be passed to ``predict``
    accepts: ClassVar[tuple[str, ...]] = ()
    #: spatial sizes must be multiples of this (the pipeline pads/resizes accordingly)
    size_multiple: ClassVar[int] = 1
    #: the authors' photo path the pipeline can reproduce (``processing="authors"``), if any:
    #: a key of :mod:`deepcolor.processing`
    authors_processing: ClassVar[str | None] = None
    #: its ``forward(L)`` at the working size exports to an inference runtime with outputs equal
    #: to torch's (checked by the tests), so ``deepcolor.runtime`` may serve it
    exportable: ClassVar[bool] = False
    #: its int8 export was measured to keep the colours (``bench/int8_check.py``: CIEDE2000 to
    #: float32 mean <= 0.5 and max <= 3 over Kodak24), so ``openvino-int8`` is offered for it
    int8_keeps_colours: ClassVar[bool] = False

    def __init__(self, working_size: int | None = None) -> None:
        super().__init__()
        # Side of the square the pipeline resizes L to; None = the model takes any size.
        self.working_size = working_size

    # --- the contract ---------------------------------------------------------------------
    def forward(self, L: torch.Tensor, **conditions: Any) -> torch.Tensor:
        """Differentiable ab prediction at the size of ``L`` (what training calls)."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, L: torch.Tensor, **conditions: Any) -> torch.Tensor:
        """ab for ``L`` (inference: eval mode, no gradients, output at ``L``'s size)."""
        self.check_conditions(conditions)
        was_training = self.training
        self.eval()
        try:
            ab = self.forward(L, **conditions)
        finally:
            self.train(was_training)
        if ab.shape[-2:] != L.shape[-2:]:
            ab = F.interpolate(ab, size=L.shape[-2:], mode="bilinear", align_corners=False)
        return ab

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's own loss on a batch with at least ``L`` and ``ab`` (CIELAB units)."""
        raise NotImplementedError(f"{type(self).__name__} has nothing to train")

    # --- helpers --------------------------------------------------------------------------
    def check_conditions(self, conditions: dict[str, Any]) -> None:
        """Refuse missing required conditions and unknown ones, naming what is allowed."""
        missing = [c for c in self.needs if conditions.get(c) is None]
        if missing:
            raise InvalidCondition(f"model {self.name!r} needs {', '.join(missing)}")
        allowed = set(self.needs) | set(self.accepts)
        unknown = sorted(c for c, v in conditions.items() if c not in allowed and v is not None)
        if unknown:
            what = ", ".join(sorted(allowed)) or "no conditions"
            raise InvalidCondition(
                f"model {self.name!r} does not take {', '.join(unknown)} (it takes {what})"
            )
        # the viewing settings' values too, so a bad one fails before any photo is started
        if conditions.get("chroma_gain") is not None:
            check_chroma_gain(conditions["chroma_gain"])
        if conditions.get("temperature") is not None:
            check_temperature(conditions["temperature"], default=1.0)

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
