"""The final treatment every stimulus goes through, and the oracle condition.

Every image a participant sees is the photo's own lightness L with a chroma field (CIELAB a, b)
at one resolution, the *chroma grid*: cells of ``CHROMA_CELL`` x ``CHROMA_CELL`` pixels (2 x 2 at
the default 512-pixel display), each holding the mean chroma of its pixels. It is what video
codecs do (4:2:0 chroma subsampling), and the eye does not resolve it: at 512 pixels over about
13 degrees of view (a laptop at arm's length) a 2-pixel cell is 1/20 of a degree, and colour
(isoluminant) contrast sensitivity is near zero above about 10 cycles per degree, where luminance
acuity reaches 50 or more. L is kept at full resolution, untouched.

Why: a camera's original carries chroma noise, demosaicking and JPEG traces at the pixel level
that no colourisation reproduces; a script reading them tells the original from any model's
output without judging colour (the audit measured "more chroma noise = real" at 100 % even
against a perfect colourisation). Projected onto the chroma grid, the original and every fake
carry chroma only at the grid's resolution; the projection is idempotent, so a colourisation
that is exact at the grid's resolution (the oracle) becomes the original itself, pixel for
pixel, and any rule that still separates a model from the original reads its colours.

The **oracle** condition is that perfect colourisation: the original's own chroma reduced to the
working resolution (the chroma grid) and back, recombined with the same L. A study that includes
it lets the audit (:mod:`study.audit`) prove that no rule separates it from the original.
"""

from __future__ import annotations

import numpy as np
import torch

from deepcolor.color import rgb_to_lab
from deepcolor.processing import recombine

CHROMA_GRID = 256  # chroma cells along the long side of the display at most: 2 x 2 px at 512 px


def chroma_cell(height: int, width: int) -> int:
    """The side of a chroma cell, in pixels, for an image of this size: 2 up to 512 pixels on
    the long side (4:2:0, as video codecs), then as many as keep ``CHROMA_GRID`` cells."""
    return max(2, -(-max(height, width) // CHROMA_GRID))


def lab_of(rgb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(L (1,1,H,W), ab (1,2,H,W)) of uint8 RGB ``(H, W, 3)``, float64, exact CIELAB."""
    x = torch.from_numpy(rgb.astype(np.float64) / 255.0).permute(2, 0, 1).unsqueeze(0)
    lab = rgb_to_lab(x)
    return lab[:, :1], lab[:, 1:]


def project_chroma(ab: torch.Tensor, cell: int) -> torch.Tensor:
    """``ab (1,2,H,W)`` with each ``cell`` x ``cell`` block replaced by its mean (blocks at the
    right and bottom edges may be smaller). Idempotent: ``project(project(x)) == project(x)``."""
    if cell <= 1:
        return ab.clone()
    h, w = ab.shape[-2:]
    ph, pw = -(-h // cell) * cell, -(-w // cell) * cell
    padded = torch.zeros((1, 2, ph, pw), dtype=ab.dtype)
    weight = torch.zeros((1, 1, ph, pw), dtype=ab.dtype)
    padded[..., :h, :w] = ab
    weight[..., :h, :w] = 1.0
    sums = padded.reshape(1, 2, ph // cell, cell, pw // cell, cell).sum(dim=(3, 5))
    counts = weight.reshape(1, 1, ph // cell, cell, pw // cell, cell).sum(dim=(3, 5))
    means = sums / counts
    full = means.repeat_interleave(cell, dim=2).repeat_interleave(cell, dim=3)
    return full[..., :h, :w].contiguous()


def finish(L: torch.Tensor, ab: torch.Tensor) -> np.ndarray:
    """The final treatment: ``ab`` projected onto the chroma grid, recombined with ``L``."""
    cell = chroma_cell(*L.shape[-2:])
    return recombine(L, project_chroma(ab.to(L.dtype), cell))


def oracle_ab(ab: torch.Tensor) -> torch.Tensor:
    """The original's own chroma through the working-resolution bottleneck (the chroma grid)."""
    return project_chroma(ab, chroma_cell(*ab.shape[-2:]))
