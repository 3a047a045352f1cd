"""Colour hints: what a user gives SIGGRAPH17-style models, and their simulation for training.

Local hints are maps: ``ab`` ``(B, 2, H, W)`` holding the hinted colour (0 elsewhere) and
``mask`` ``(B, 1, H, W)`` (1 where a hint is). A user's hint is a :class:`PointHint` placed in
fractions of the image size so that it means the same point at any resolution.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .errors import InvalidCondition


@dataclass(frozen=True)
class PointHint:
    """One user hint: the colour (CIELAB a, b) of a small square around (x, y)."""

    x: float  # 0 = left edge, 1 = right edge
    y: float  # 0 = top, 1 = bottom
    a: float
    b: float
    size: int = 3  # side of the square patch, in pixels of the model's working size

    def __post_init__(self) -> None:
        if not (0.0 <= self.x <= 1.0 and 0.0 <= self.y <= 1.0):
            raise InvalidCondition(f"hint position ({self.x}, {self.y}) is outside the image")
        if not (-128 <= self.a <= 128 and -128 <= self.b <= 128):
            raise InvalidCondition(f"hint colour a={self.a}, b={self.b} is outside CIELAB's range")
        if not 1 <= self.size <= 64:
            raise InvalidCondition(f"hint size {self.size} must be between 1 and 64 pixels")


def as_point_hints(hints: Iterable) -> list[PointHint]:
    """Accept PointHints, dicts or (x, y, a, b[, size]) tuples."""
    out = []
    for hint in hints:
        if isinstance(hint, PointHint):
            out.append(hint)
        elif isinstance(hint, dict):
            try:
                out.append(PointHint(**hint))
            except TypeError as exc:
                raise InvalidCondition(f"bad hint {hint!r}: {exc}") from None
        elif isinstance(hint, Sequence) and not isinstance(hint, str) and len(hint) in (4, 5):
            try:
                values = [float(v) for v in hint[:4]] + [int(v) for v in hint[4:]]
            except (TypeError, ValueError):
                raise InvalidCondition(
                    f"bad hint {hint!r}: expected numbers (x, y, a, b[, size])"
                ) from None
            out.append(PointHint(*values))
        else:
            raise InvalidCondition(f"bad hint {hint!r}: expected (x, y, a, b[, size])")
    return out


def encode_point_hints(
    hints: Sequence[PointHint], height: int, width: int, dtype=torch.float32, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rasterise hints into ``(ab (1,2,H,W), mask (1,1,H,W))`` at a given size."""
    ab = torch.zeros(1, 2, height, width, dtype=dtype, device=device)
    mask = torch.zeros(1, 1, height, width, dtype=dtype, device=device)
    for hint in hints:
        size = min(hint.size, height, width)
        top = min(max(round(hint.y * (height - 1) - (size - 1) / 2), 0), height - size)
        left = min(max(round(hint.x * (width - 1) - (size - 1) / 2), 0), width - size)
        ab[0, 0, top : top + size, left : left + size] = hint.a
        ab[0, 1, top : top + size, left : left + size] = hint.b
        mask[0, 0, top : top + size, left : left + size] = 1.0
    return ab, mask


def sample_hints_from_truth(
    ab: torch.Tensor,
    *,
    p: float = 1 / 8,
    patch_sizes: Sequence[int] = tuple(range(1, 10)),
    num_points: int | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Simulated user hints (Zhang et al. 2017): geometric count, Gaussian-centred positions.

    For each image: the number of points is geometric with success ``p`` (P(n=k) = (1-p)^k p),
    unless ``num_points`` fixes it; each point reveals the mean ab of a P×P patch, P drawn from
    ``patch_sizes``, at a position drawn from N(centre, size/4) clipped to the image.
    """
    b, _, h, w = ab.shape
    hint_ab = torch.zeros_like(ab)
    mask = torch.zeros(b, 1, h, w, dtype=ab.dtype, device=ab.device)

    def rand() -> float:
        return float(torch.rand((), generator=generator))

    for i in range(b):
        if num_points is None:
            n = 0
            while rand() < 1 - p:
                n += 1
        else:
            n = num_points
        for _ in range(n):
            size = int(patch_sizes[int(torch.randint(len(patch_sizes), (), generator=generator))])
            size = min(size, h, w)
            top = _gaussian_position(h - size + 1, generator)
            left = _gaussian_position(w - size + 1, generator)
            patch = ab[i, :, top : top + size, left : left + size]
            hint_ab[i, :, top : top + size, left : left + size] = patch.mean(
                dim=(1, 2), keepdim=True
            )
            mask[i, :, top : top + size, left : left + size] = 1.0
    return hint_ab, mask


def ground_truth_point_hints(
    original: np.ndarray, count: int, seed: int, *, size: int = 5, working_size: int = 176
) -> list[PointHint]:
    """``count`` user-style hints read off a colour photo: the evaluation's hint protocol.

    Positions are Gaussian around the centre (N(0.5, 0.25) in fractions of each side, clipped);
    each hint gives the true mean ab of a ``size`` x ``size`` patch at the model's working size
    (``working_size``), measured on the full-resolution ``original`` (``(H, W, 3)`` uint8).
    """
    if count == 0:
        return []
    from skimage.color import rgb2lab  # only the evaluation needs it

    rng = np.random.default_rng(seed)
    lab = rgb2lab(original / 255.0)
    hints = []
    for _ in range(count):
        y = float(np.clip(rng.normal(0.5, 0.25), 0.0, 1.0))
        x = float(np.clip(rng.normal(0.5, 0.25), 0.0, 1.0))
        a, b = true_hint_colour(lab, x, y, size=size, working_size=working_size)
        hints.append(PointHint(x=x, y=y, a=a, b=b, size=size))
    return hints


def wrong_colour_point_hint(
    original: np.ndarray, seed: int, *, chroma: float = 40.0, size: int = 5
) -> PointHint:
    """A hint at a seeded random spot (uniform in the middle 90 % of each side) whose colour
    is the opposite hue of the truth there at ``chroma``: how far a hint reaches shows."""
    from skimage.color import rgb2lab

    rng = np.random.default_rng(seed)
    x, y = (float(v) for v in rng.uniform(0.05, 0.95, size=2))
    a, b = true_hint_colour(rgb2lab(original / 255.0), x, y, size=size)
    hue = np.arctan2(b, a) + np.pi
    return PointHint(
        x=x, y=y, a=chroma * float(np.cos(hue)), b=chroma * float(np.sin(hue)), size=size
    )


def true_hint_colour(
    lab: np.ndarray, x: float, y: float, *, size: int = 5, working_size: int = 176
) -> tuple[float, float]:
    """Mean (a, b) of ``lab`` ``(H, W, 3)`` under a hint patch of ``size`` working pixels."""
    h, w = lab.shape[:2]
    cy, cx = round(y * (h - 1)), round(x * (w - 1))
    r = max(1, round(size * max(h, w) / working_size / 2))  # the patch's footprint at full size
    patch = lab[max(0, cy - r) : cy + r + 1, max(0, cx - r) : cx + r + 1, 1:]
    a, b = patch.reshape(-1, 2).mean(axis=0)
    return float(a), float(b)


def _gaussian_position(extent: int, generator: torch.Generator | None) -> int:
    value = extent / 2 + float(torch.randn((), generator=generator)) * extent / 4
    return int(min(max(value, 0), extent - 1))


def saturation_hint(ab: torch.Tensor) -> torch.Tensor:
    """Global saturation of each image (mean chroma / 110), ``(B, 1)``: a global hint."""
    chroma = ab.pow(2).sum(dim=1).sqrt()
    return (chroma.flatten(1).mean(dim=1, keepdim=True) / 110.0).clamp(0, 1)


#: pixel-hint pairs weighed at once by :func:`spread_hint_colours` (bounds its memory, ~16 MB)
MAX_SPREAD_PAIRS = 1 << 22
#: quantiles of a hint patch's lightness that stand for it (a patch on an edge has two sides)
LIGHTNESS_SAMPLES = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9])


def geodesic_distances(
    L: np.ndarray,
    sources: np.ndarray,
    *,
    edge_cost: float,
    limit: float = np.inf,
) -> np.ndarray:
    """Geodesic distance from each source region over the lightness image, ``(K, H, W)``.

    ``L`` ``(H, W)`` in CIELAB units; ``sources`` ``(H, W)`` integer labels, 1..K for the K
    regions (0 elsewhere). A step between 8-neighbours costs
    ``sqrt(step ** 2 + (edge_cost * dL / 100) ** 2)``, the step in fractions of the image's
    longer side: a flat surface is crossed at its length, a lightness edge of 50 costs as much
    as ``edge_cost / 2`` of the image. Distances beyond ``limit`` are ``inf``.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import dijkstra

    h, w = L.shape
    scale = float(max(h, w))
    index = np.arange(h * w).reshape(h, w)
    rows, cols, costs = [], [], []
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        xs, xt = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w + min(0, dx))
        first, second = L[: h - dy, xs].ravel(), L[dy:, xt].ravel()
        step = np.hypot(dy, dx) / scale
        rows.append(index[: h - dy, xs].ravel())
        cols.append(index[dy:, xt].ravel())
        costs.append(np.sqrt(step**2 + (edge_cost * (first - second) / 100.0) ** 2))
    graph = csr_matrix(
        (np.concatenate(costs), (np.concatenate(rows), np.concatenate(cols))), shape=(h * w,) * 2
    )
    count = int(sources.max())
    out = np.empty((count, h, w))
    for k in range(1, count + 1):
        start = np.flatnonzero(sources.ravel() == k)
        out[k - 1] = dijkstra(
            graph, directed=False, indices=start, min_only=True, limit=limit
        ).reshape(h, w)
    return out


def spread_hint_colours(
    L: torch.Tensor,
    ab: torch.Tensor,
    hint_ab: torch.Tensor,
    mask: torch.Tensor,
    *,
    sigma_reach: float = 1.0,
    edge_cost: float = 4.0,
    smooth_l: float = 1.5,
    sigma_xy: float = 0.5,
    straight_weight: float = 0.1,
    sigma_l: float = 5.0,
    floor: float = 0.01,
    sigma_near: float = 0.06,
    near_weight: float = 100.0,
    chroma_follows_lightness: bool = True,
) -> torch.Tensor:
    """Carry each hint over the region it was given in; the network's colours stay elsewhere.

    A user's hint is an intent for one region, so spreading has two parts.

    **Where** a hint acts is local and edge-aware. Its *reach* at a pixel is Gaussian
    (``sigma_reach``, a fraction of the image's longer side) in the geodesic distance from
    the hint over the lightness image (:func:`geodesic_distances` with ``edge_cost``, on L
    blurred by ``smooth_l`` pixels so that fine texture costs less than an edge, while a real
    edge costs its full height): a hint fills the surface it was placed on, fades across it,
    and a lightness edge stops it. Several hints reach a pixel as independent chances
    (1 - prod(1 - reach)), so a pixel between two hints is covered more than by either: a
    single hint is not widened by that, while a surface hinted at several places is filled.

    **What** colour the reached pixels take is a weighted mean of the hint colours and of the
    pixel's own prediction: a hint's weight is Gaussian in lightness difference (``sigma_l``,
    CIELAB L; a hint patch stands for a few quantiles of its pixels' lightness, so a patch on
    an edge serves both sides) times a broad Gaussian (``sigma_xy``) in geodesic distance,
    plus ``straight_weight`` times the same in straight-line distance (where every hint is
    behind edges, the one of the most similar lightness still counts), plus a narrow Gaussian
    in geodesic distance (``sigma_near``, weighted ``near_weight``) so that each hint wins on
    its own surface. The prediction's weight is ``floor``. The output is the prediction moved
    towards that mean by the reach: far from every hint, or behind an edge, the network's
    colour stays.

    With ``chroma_follows_lightness``, what spreads is ab / L (hue and relative chroma) and each
    pixel multiplies it by its own L: a hint given on a lit part of a surface colours its
    shaded part with the same hue but less chroma, as a darker shade of one colour has in
    CIELAB. No pixel gets more chroma than the most chromatic hint or its own prediction, so a
    hint placed on a near-black pixel is not amplified on lighter ones.

    The defaults were chosen on bsds500's validation photos (``bench/tune_hint_propagation.py``,
    locality and accuracy measured as in ``bench/hint_locality.py``). Differentiable in ``ab``
    and ``hint_ab`` (the reach depends on ``L`` and the mask only); images without hints are
    unchanged.
    """
    from scipy import ndimage  # only hinted photos need it: importing it costs ~0.2 s

    out = []
    for i in range(L.shape[0]):
        known = mask[i, 0] > 0.5
        if not bool(known.any()):
            out.append(ab[i])
            continue
        regions, count = ndimage.label(known.cpu().numpy(), structure=np.ones((3, 3)))
        distance = torch.as_tensor(
            geodesic_distances(
                ndimage.gaussian_filter(L[i, 0].detach().float().cpu().numpy(), smooth_l),
                regions,
                edge_cost=edge_cost,
                limit=4 * max(sigma_reach, sigma_xy, sigma_near),
            ),
            dtype=torch.float32,
            device=L.device,
        ).flatten(1)  # (K, HW)
        # one hint per region: its pixels' mean lightness, position and colour
        members = torch.nn.functional.one_hot(
            torch.as_tensor(regions, device=L.device).reshape(-1).long(), count + 1
        )[:, 1:].float()  # (HW, K)
        colour = _hint_mean_colour(
            _pixel_grid(*L.shape[-2:], L.device),
            L[i, 0].reshape(-1).float(),
            ab[i].reshape(2, -1).float().T,
            hint_ab[i].reshape(2, -1).float().T,
            members,
            distance,
            sigma_xy=sigma_xy,
            straight_weight=straight_weight,
            sigma_l=sigma_l,
            floor=floor,
            sigma_near=sigma_near,
            near_weight=near_weight,
            chroma_follows_lightness=chroma_follows_lightness,
        )
        each = torch.exp(-distance.pow(2) / (2 * sigma_reach**2))  # (K, HW)
        reach = 1 - (1 - each).prod(dim=0)
        predicted = ab[i].reshape(2, -1).float()
        moved = predicted + reach * (colour.T - predicted)
        out.append(moved.reshape(ab[i].shape).to(ab.dtype))
    return torch.stack(out)


def _pixel_grid(height: int, width: int, device) -> torch.Tensor:
    """``(2, HW)`` pixel positions (y, x) in fractions of the image's longer side."""
    scale = float(max(height, width))
    ys = torch.arange(height, device=device, dtype=torch.float32) / scale
    xs = torch.arange(width, device=device, dtype=torch.float32) / scale
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=0).reshape(2, -1)


def _hint_mean_colour(
    grid: torch.Tensor,
    lum: torch.Tensor,
    predicted: torch.Tensor,
    hint_ab: torch.Tensor,
    members: torch.Tensor,
    distance: torch.Tensor,
    *,
    sigma_xy: float,
    straight_weight: float,
    sigma_l: float,
    floor: float,
    sigma_near: float,
    near_weight: float,
    chroma_follows_lightness: bool,
) -> torch.Tensor:
    """Each pixel's weighted mean of the hint colours and its prediction, ``(HW, 2)``.

    ``grid`` (2, HW) pixel positions, ``lum`` (HW,), ``predicted`` and ``hint_ab`` (HW, 2),
    ``members`` (HW, K) one-hot: which pixels each hint covers, ``distance`` (K, HW): the
    geodesic distance from each hint.
    """
    # ab per unit of lightness is what spreads; 1 keeps black pixels finite
    shade = lum.clamp(min=1.0)[:, None] if chroma_follows_lightness else lum.new_ones(len(lum), 1)
    size = members.sum(dim=0)  # (K,) pixels per hint
    given = (members.T @ hint_ab) / size[:, None]  # (K, 2) each hint's colour
    # each hint's lightness as a few samples of its pixels' (a patch on an edge has two)
    hint_l = torch.stack(
        [
            torch.quantile(lum[members[:, k] > 0], LIGHTNESS_SAMPLES.to(lum))
            for k in range(len(size))
        ]
    )  # (K, S)
    per_lightness = hint_l.clamp(min=1.0) if chroma_follows_lightness else torch.ones_like(hint_l)
    colours = given[:, None, :] / per_lightness[..., None]  # (K, S, 2)
    hint_xy = (grid @ members) / size
    # ...but never more chroma than the user gave or the network predicted: a hint on a
    # near-black pixel would otherwise be multiplied many times over on lighter ones
    limit = torch.maximum(predicted.norm(dim=1, keepdim=True), given.norm(dim=1).max())
    predicted = predicted / shade
    # each hint counts by its area (25 pixels: one 5x5 patch), shared among all hints
    strength = size * (25.0 / size.sum()) / len(LIGHTNESS_SAMPLES)
    chunk = max(1, MAX_SPREAD_PAIRS // hint_l.numel())
    pieces = []
    for start in range(0, len(lum), chunk):
        rows = slice(start, start + chunk)
        near = distance[:, rows].T.pow(2)  # (n, K) squared geodesic distances
        d_xy = (grid[:, rows, None] - hint_xy[:, None, :]).pow(2).sum(dim=0)  # (n, K)
        spatial = torch.exp(-near / (2 * sigma_xy**2)) + straight_weight * torch.exp(
            -d_xy / (2 * sigma_xy**2)
        )
        if near_weight > 0:
            spatial = spatial + near_weight * torch.exp(-near / (2 * sigma_near**2))
        d_l = (lum[rows, None, None] - hint_l[None]).pow(2)  # (n, K, S)
        weight = torch.exp(-d_l / (2 * sigma_l**2)) * (spatial * strength)[..., None]
        weight = weight.flatten(1)  # (n, K * S)
        spread = (
            shade[rows]
            * (weight @ colours.reshape(-1, 2) + floor * predicted[rows])
            / (weight.sum(dim=1, keepdim=True) + floor)
        )
        chroma = spread.norm(dim=1, keepdim=True).clamp(min=1e-6)
        pieces.append(spread * (limit[rows] / chroma).clamp(max=1.0))
    return torch.cat(pieces)
