"""The steps around a network, as a photo path takes them: full-resolution L, L at the working
size, ab back to full size, and the join into 8-bit RGB.

Two processings exist. ``smooth`` (the default, for every model): exact CIELAB L, the photo's L
resized with antialiasing, ab upsampled bilinearly, exact CIELAB -> sRGB; on an oracle (a
photo's own ab fed through it) it lands closest to the true colours. ``authors`` reproduces a
model's original code where the model declares it (``Colorizer.authors_processing``); DDColor's
code (piddnad/DDColor, ``ColorizationPipeline.process``) resizes the RGB photo before taking L,
upsamples ab with nearest-neighbour interpolation and converts with OpenCV's float32 CIELAB,
whose L differs from exact CIELAB by up to 0.19 and whose out-of-gamut colours are clipped
differently, so its steps are taken with OpenCV here too.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F

from .color import join_lab, lab_to_rgb, rgb_to_luminance
from .errors import InvalidCondition
from .images import to_uint8

SMOOTH = "smooth"
AUTHORS = "authors"
PROCESSINGS = (SMOOTH, AUTHORS)


def resize_smooth(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, antialiased when shrinking (no aliasing of fine texture into the result)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    shrinking = size[0] < x.shape[-2] or size[1] < x.shape[-1]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=shrinking)


def recombine(L: torch.Tensor, ab: torch.Tensor) -> np.ndarray:
    """Full-resolution ``L (1,1,H,W)`` and ``ab (1,2,H,W)`` -> uint8 RGB ``(H, W, 3)``, exact
    CIELAB."""
    return to_uint8(lab_to_rgb(join_lab(L, ab.to(L.dtype)))[0].permute(1, 2, 0).numpy())


class Processing(Protocol):
    """What the pipeline asks of a processing; ``rgb`` is the photo, ``(H, W, 3)`` in [0, 1]."""

    name: str

    def lightness(self, rgb: np.ndarray) -> torch.Tensor:
        """Full-resolution L, ``(1, 1, H, W)`` float64."""

    def working_lightness(
        self, rgb: np.ndarray | None, L: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """L at the working ``size``, float32, from the photo where it is given, else from L."""

    def upsample_ab(self, ab: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """ab at the working size -> ab at ``size``."""

    def recombine(self, L: torch.Tensor, ab: torch.Tensor) -> np.ndarray:
        """Full-resolution L and ab -> uint8 RGB ``(H, W, 3)``."""


class SmoothProcessing:
    """Exact CIELAB throughout, antialiased L, bilinear ab: the output's L is the input's."""

    name = SMOOTH

    def lightness(self, rgb: np.ndarray) -> torch.Tensor:
        return rgb_to_luminance(torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0))

    def working_lightness(
        self, rgb: np.ndarray | None, L: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        return resize_smooth(L.to(torch.float32), size)

    def upsample_ab(self, ab: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return resize_smooth(ab, size)

    def recombine(self, L: torch.Tensor, ab: torch.Tensor) -> np.ndarray:
        return recombine(L, ab)


class DDColorAuthorsProcessing:
    """DDColor's own photo path (piddnad/DDColor ``ColorizationPipeline.process``), step for
    step: OpenCV's float32 CIELAB for L and for the join, the RGB photo resized with plain
    bilinear interpolation (no antialiasing) before its L is taken, ab upsampled with
    nearest-neighbour interpolation."""

    name = AUTHORS

    @staticmethod
    def _cv2_lightness(rgb: np.ndarray) -> torch.Tensor:
        import cv2

        L = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.float32), cv2.COLOR_RGB2Lab)[..., 0]
        return torch.from_numpy(L.astype(np.float64))[None, None]

    def lightness(self, rgb: np.ndarray) -> torch.Tensor:
        return self._cv2_lightness(rgb)

    def working_lightness(
        self, rgb: np.ndarray | None, L: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        if rgb is None:  # L alone (video frames): the same plain bilinear resize, of L
            return F.interpolate(L.to(torch.float32), size=size, mode="bilinear")
        import cv2

        height, width = size
        small = cv2.resize(np.ascontiguousarray(rgb, dtype=np.float32), (width, height))
        return self._cv2_lightness(small).to(torch.float32)

    def upsample_ab(self, ab: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return F.interpolate(ab, size=size, mode="nearest")

    def recombine(self, L: torch.Tensor, ab: torch.Tensor) -> np.ndarray:
        import cv2

        lab = torch.cat([L.to(torch.float32), ab.to(torch.float32)], dim=1)[0]
        rgb = cv2.cvtColor(np.ascontiguousarray(lab.permute(1, 2, 0).numpy()), cv2.COLOR_Lab2RGB)
        return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


_AUTHORS = {"ddcolor": DDColorAuthorsProcessing}


def processing_for(name: str | None, model_name: str, authors: str | None) -> Processing:
    """The processing ``name`` (None: ``smooth``) for a model whose authors' code is
    ``authors`` (a key its class declares, or None when no authors' path is reproduced)."""
    if name in (None, SMOOTH):
        return SmoothProcessing()
    if name != AUTHORS:
        raise InvalidCondition(
            f"unknown processing {name!r}; choose {' or '.join(PROCESSINGS)} ({SMOOTH}: exact "
            f"CIELAB and smooth resizing; {AUTHORS}: the model's original code, where reproduced)"
        )
    if authors not in _AUTHORS:
        raise InvalidCondition(
            f"model {model_name!r} has no reproduction of its authors' processing; use "
            f"processing {SMOOTH!r} (the authors' processing exists for the DDColor models)"
        )
    return _AUTHORS[authors]()
