"""Suggested colours at a point: the likeliest *distinct* colours of a model's 313-bin distribution.

A classification model (``unet_bins``, ``eccv16``) scores Zhang et al.'s 313 ab bins at every
point. Neighbouring bins look alike, and at a given lightness many of them clip to the same sRGB
colour, so the plain top-k would offer near-duplicates. Here bins are taken in order of
probability and one is kept only when it looks different (CIELAB distance of at least
``min_distance`` after gamut clipping) from every colour kept before; a bin that is not kept adds
its probability to the kept colour it resembles most.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from .color import ab_bin_centers, lab_to_rgb, rgb_to_lab
from .errors import InvalidCondition

if TYPE_CHECKING:
    from .pipeline import ColorizationPipeline

DEFAULT_COUNT = 6
MAX_COUNT = 8
#: CIELAB distance below which two suggestions would look like one colour (bins are 10 apart)
MIN_DISTANCE = 15.0


@dataclass(frozen=True)
class SuggestedColor:
    """One suggestion: how it looks at the point's lightness, and how likely the model finds it."""

    hex: str  # "#rrggbb"
    a: float  # CIELAB chroma of the bin centre
    b: float
    probability: float  # the mass of every bin this colour stands for


def point_distribution(probs: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """The ``(313,)`` distribution at fractions ``(x, y)`` of a ``(313, h, w)`` map.

    The 3x3 cells around the point are averaged, so one noisy cell does not decide.
    """
    if probs.dim() != 3:
        raise InvalidCondition(f"expected a (313, h, w) distribution, got {tuple(probs.shape)}")
    if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
        raise InvalidCondition(f"the point ({x}, {y}) is outside the image")
    height, width = probs.shape[-2:]
    row, col = min(int(y * height), height - 1), min(int(x * width), width - 1)
    window = probs[:, max(row - 1, 0) : row + 2, max(col - 1, 0) : col + 2]
    return window.float().mean(dim=(1, 2))


def distinct_colors(
    distribution: torch.Tensor,
    lightness: float,
    count: int = DEFAULT_COUNT,
    min_distance: float = MIN_DISTANCE,
) -> list[SuggestedColor]:
    """The ``count`` likeliest colours of a ``(313,)`` bin distribution that look distinct at
    ``lightness``, likeliest first (fewer when the gamut there holds fewer distinct colours)."""
    if not 1 <= count <= MAX_COUNT:
        raise InvalidCondition(f"ask for 1 to {MAX_COUNT} suggestions, not {count}")
    centres = ab_bin_centers(dtype=torch.float64)
    L = torch.full((len(centres), 1), float(lightness), dtype=torch.float64)
    lab = torch.cat([L, centres], dim=1).T.reshape(3, -1, 1)
    rgb = lab_to_rgb(lab)  # out-of-gamut bins clip: compare colours as they will be shown
    shown = rgb_to_lab(rgb).reshape(3, -1).T
    p = distribution.double().flatten()
    kept: list[int] = []
    mass: list[float] = []
    for index in torch.argsort(p, descending=True).tolist():
        if kept:
            distance = (shown[kept] - shown[index]).norm(dim=1)
            nearest = int(distance.argmin())
            if float(distance[nearest]) < min_distance:
                mass[nearest] += float(p[index])
                continue
        if len(kept) < count:
            kept.append(index)
            mass.append(float(p[index]))
    rgb8 = (rgb.reshape(3, -1).T * 255).round().to(torch.int64)
    out = [
        SuggestedColor(
            hex="#" + "".join(f"{int(v):02x}" for v in rgb8[i]),
            a=round(float(centres[i, 0]), 2),
            b=round(float(centres[i, 1]), 2),
            probability=round(m, 4),
        )
        for i, m in zip(kept, mass, strict=True)
    ]
    return sorted(out, key=lambda s: -s.probability)


def suggest_colors(
    pipe: ColorizationPipeline, L: torch.Tensor, x: float, y: float, count: int = DEFAULT_COUNT
) -> list[SuggestedColor]:
    """The likeliest distinct colours at fractions ``(x, y)`` of a photo with lightness
    ``L (1, 1, H, W)``, from ``pipe``'s model (one with a bin distribution, e.g. ``unet_bins``)."""
    distribution = point_distribution(pipe.bin_distribution(L), x, y)
    height, width = L.shape[-2:]
    lightness = L[0, 0, min(int(y * height), height - 1), min(int(x * width), width - 1)]
    return distinct_colors(distribution, float(lightness), count)
