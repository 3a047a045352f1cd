"""Colour science in torch: sRGB <-> CIELAB (D65, 2° observer), model scaling, 313-bin ab gamut.

Pure, batched, differentiable functions on ``(B, 3, H, W)`` tensors (or ``(3, H, W)``), float32
or float64, on any device. The constants match scikit-image's ``rgb2lab``/``lab2rgb`` so that
figures computed here agree with the reference protocol of the evaluation data.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
import torch
import torch.nn.functional as F

# Scaling every network uses; nothing else in the package may hard-code these.
L_CENTER = 50.0  # network input is (L - L_CENTER) / L_SCALE
L_SCALE = 100.0
AB_SCALE = 110.0  # networks work on ab / AB_SCALE, roughly [-1, 1]

# Mean ab of the training photos: the `tint` baseline's colour.
TRAIN_MEAN_AB = (2.46, 8.63)

# sRGB (D65) -> XYZ, as in IEC 61966-2-1 and scikit-image.
_XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
_WHITE_D65 = (0.95047, 1.0, 1.08883)
_EPS = 0.008856  # (6/29)**3, rounded as in scikit-image
_KAPPA_SLOPE = 7.787
_LAB_OFFSET = 16.0 / 116.0


def _matrix(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=like.dtype, device=like.device)


def _channels_first(x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    if x.dim() == 3:
        return x.unsqueeze(0), True
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) or (3, H, W), got shape {tuple(x.shape)}")
    return x, False


def _apply_matrix(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", m, x)


def srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    """Undo the sRGB transfer curve (values in [0, 1])."""
    high = ((rgb.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4
    return torch.where(rgb > 0.04045, high, rgb / 12.92)


def linear_to_srgb(linear: torch.Tensor) -> torch.Tensor:
    """Apply the sRGB transfer curve; the input is clipped to [0, 1] first, as scikit-image does."""
    high = 1.055 * linear.clamp(min=0.0031308) ** (1 / 2.4) - 0.055
    out = torch.where(linear > 0.0031308, high, linear * 12.92)
    return out.clamp(0.0, 1.0)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] -> CIELAB (L in [0, 100], a/b about [-110, 110])."""
    rgb, squeezed = _channels_first(rgb)
    xyz = _apply_matrix(_matrix(_XYZ_FROM_RGB, rgb), srgb_to_linear(rgb))
    white = _matrix(_WHITE_D65, rgb).view(1, 3, 1, 1)
    t = xyz / white
    f = torch.where(t > _EPS, t.clamp(min=_EPS) ** (1 / 3), _KAPPA_SLOPE * t + _LAB_OFFSET)
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
    lab = torch.stack((116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=1)
    return lab[0] if squeezed else lab


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """CIELAB -> sRGB in [0, 1] (out-of-gamut colours clipped, as scikit-image does)."""
    lab, squeezed = _channels_first(lab)
    fy = (lab[:, 0] + 16.0) / 116.0
    fx = lab[:, 1] / 500.0 + fy
    fz = (fy - lab[:, 2] / 200.0).clamp(min=0.0)  # scikit-image clips negative z the same way
    f = torch.stack((fx, fy, fz), dim=1)
    threshold = 0.2068966  # 6/29
    t = torch.where(f > threshold, f.clamp(min=threshold) ** 3, (f - _LAB_OFFSET) / _KAPPA_SLOPE)
    xyz = t * _matrix(_WHITE_D65, lab).view(1, 3, 1, 1)
    rgb_from_xyz = torch.linalg.inv(_matrix(_XYZ_FROM_RGB, lab).double()).to(lab.dtype)
    rgb = linear_to_srgb(_apply_matrix(rgb_from_xyz, xyz))
    return rgb[0] if squeezed else rgb


def rgb_to_luminance(rgb: torch.Tensor) -> torch.Tensor:
    """The L channel of ``rgb_to_lab``, shape ``(B, 1, H, W)`` (or ``(1, H, W)``).

    Only Y is computed (L needs neither X nor Z), and for a gray image, whose three channels are
    equal, from one channel: the Y row of the matrix sums to 1, so Y is that channel made linear.
    Every photo starts here, so this is a third of the work of ``rgb_to_lab`` or less.
    """
    rgb, squeezed = _channels_first(rgb)
    gray = torch.equal(rgb[:, 0], rgb[:, 1]) and torch.equal(rgb[:, 1], rgb[:, 2])
    if gray:
        y = srgb_to_linear(rgb[:, :1])
    else:
        y = _apply_matrix(_matrix(_XYZ_FROM_RGB[1:2], rgb), srgb_to_linear(rgb))
    f = torch.where(y > _EPS, y.clamp(min=_EPS) ** (1 / 3), _KAPPA_SLOPE * y + _LAB_OFFSET)
    L = 116.0 * f - 16.0  # the white point's Y is 1
    return L[0] if squeezed else L


def join_lab(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Concatenate ``L (B,1,H,W)`` and ``ab (B,2,H,W)`` into Lab."""
    return torch.cat((L, ab.to(L.dtype)), dim=1)


# --- the scaling every network uses -------------------------------------------------------


def normalize_l(L: torch.Tensor) -> torch.Tensor:
    """CIELAB L in [0, 100] -> network input centred on 0, about [-0.5, 0.5]."""
    return (L - L_CENTER) / L_SCALE


def normalize_ab(ab: torch.Tensor) -> torch.Tensor:
    """CIELAB ab -> about [-1, 1]."""
    return ab / AB_SCALE


def denormalize_ab(ab: torch.Tensor) -> torch.Tensor:
    """Network ab (about [-1, 1]) -> CIELAB units."""
    return ab * AB_SCALE


def gray_rgb_from_l(L: torch.Tensor) -> torch.Tensor:
    """L replicated into a gray sRGB image in [0, 1] (what a classifier sees of a gray photo)."""
    zeros = torch.zeros_like(L).repeat_interleave(2, dim=1)
    return lab_to_rgb(join_lab(L, zeros))


# --- the 313-bin quantised ab gamut of Zhang et al. ---------------------------------------


@lru_cache(maxsize=1)
def _bins_numpy() -> np.ndarray:
    with resources.files("deepcolor.data").joinpath("pts_in_hull.npy").open("rb") as fh:
        return np.load(fh).astype(np.float64)


@lru_cache(maxsize=1)
def _prior_numpy() -> np.ndarray:
    with resources.files("deepcolor.data").joinpath("prior_probs.npy").open("rb") as fh:
        return np.load(fh).astype(np.float64)


NUM_AB_BINS = 313


def ab_bin_centers(device=None, dtype=torch.float32) -> torch.Tensor:
    """The 313 in-gamut ab bin centres, ``(313, 2)`` in CIELAB units (Zhang et al. 2016)."""
    return torch.as_tensor(_bins_numpy(), dtype=dtype, device=device)


def ab_prior(device=None, dtype=torch.float32) -> torch.Tensor:
    """Empirical ImageNet probability of each of the 313 bins (sums to 1)."""
    return torch.as_tensor(_prior_numpy(), dtype=dtype, device=device)


def rebalancing_weights(lam: float = 0.5, device=None, dtype=torch.float32) -> torch.Tensor:
    """Per-bin class-rebalancing weights ``w ∝ ((1-λ) p + λ/Q)^-1``, normalised so E_p[w] = 1."""
    prior = ab_prior(dtype=torch.float64)
    weights = 1.0 / ((1.0 - lam) * prior + lam / NUM_AB_BINS)
    weights = weights / (prior * weights).sum()
    return weights.to(device=device, dtype=dtype)


def _flat_ab(ab: torch.Tensor) -> torch.Tensor:
    return ab.permute(0, 2, 3, 1).reshape(-1, 2)


def ab_to_bins(ab: torch.Tensor) -> torch.Tensor:
    """Index of the nearest bin for each pixel: ``(B, 2, H, W)`` -> ``(B, H, W)`` long."""
    centers = ab_bin_centers(ab.device, ab.dtype)
    dist = torch.cdist(_flat_ab(ab), centers)
    b, _, h, w = ab.shape
    return dist.argmin(dim=1).view(b, h, w)


def soft_encode_ab(ab: torch.Tensor, neighbours: int = 5, sigma: float = 5.0) -> torch.Tensor:
    """Soft-encoded targets: Gaussian weights on the ``neighbours`` nearest bins, ``(B, 313, H, W)``."""
    centers = ab_bin_centers(ab.device, ab.dtype)
    dist = torch.cdist(_flat_ab(ab), centers)
    near_dist, near_idx = dist.topk(neighbours, dim=1, largest=False)
    weights = torch.exp(-(near_dist**2) / (2 * sigma**2))
    weights = weights / weights.sum(dim=1, keepdim=True)
    encoded = torch.zeros(dist.shape, dtype=ab.dtype, device=ab.device)
    encoded.scatter_(1, near_idx, weights)
    b, _, h, w = ab.shape
    return encoded.view(b, h, w, NUM_AB_BINS).permute(0, 3, 1, 2)


def annealed_mean(logits: torch.Tensor, temperature: float = 0.38) -> torch.Tensor:
    """Zhang et al.'s annealed mean: softmax(logits / T) weighted bin centres, ``(B, 2, H, W)``.

    ``T = 1`` is the distribution's mean; ``T -> 0`` tends to its mode.
    """
    if temperature <= 0:
        raise ValueError("temperature must be > 0 (use a small value such as 0.01 for the mode)")
    probs = F.softmax(logits.float() / temperature, dim=1)
    centers = ab_bin_centers(logits.device, probs.dtype)
    return torch.einsum("bqhw,qc->bchw", probs, centers).to(logits.dtype)


def ab_histogram(ab: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised histogram over the 313 bins of each image's ab, ``(B, 313)``."""
    bins = ab_to_bins(ab).flatten(1)
    weights = (
        torch.ones_like(bins, dtype=ab.dtype) if mask is None else mask.flatten(1).to(ab.dtype)
    )
    hist = torch.zeros(ab.shape[0], NUM_AB_BINS, dtype=ab.dtype, device=ab.device)
    hist.scatter_add_(1, bins, weights)
    return hist / hist.sum(dim=1, keepdim=True).clamp(min=1e-12)
