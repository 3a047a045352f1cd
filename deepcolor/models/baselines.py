"""The two baselines every learned model is shown next to: ``gray`` and ``tint``."""

from __future__ import annotations

import torch

from ..color import TRAIN_MEAN_AB
from ..registry import register_colorizer
from .base import Colorizer


@register_colorizer(
    "gray",
    summary="Baseline: keeps L, ab = 0 (the input, unchanged)",
    weights="none (no parameters)",
    trainable=False,
)
class GrayColorizer(Colorizer):
    def __init__(self) -> None:
        super().__init__(working_size=None)

    def forward(self, L: torch.Tensor, **conditions) -> torch.Tensor:
        return torch.zeros(L.shape[0], 2, *L.shape[-2:], dtype=L.dtype, device=L.device)


@register_colorizer(
    "tint",
    summary="Baseline: keeps L, a constant ab (the training photos' mean, 2.46 / 8.63)",
    weights="none (one constant)",
    trainable=False,
)
class TintColorizer(Colorizer):
    def __init__(self, a: float = TRAIN_MEAN_AB[0], b: float = TRAIN_MEAN_AB[1]) -> None:
        super().__init__(working_size=None)
        self.a, self.b = float(a), float(b)

    def forward(self, L: torch.Tensor, **conditions) -> torch.Tensor:
        ab = torch.tensor((self.a, self.b), dtype=L.dtype, device=L.device)
        return ab.view(1, 2, 1, 1).expand(L.shape[0], 2, *L.shape[-2:]).clone()
