"""``siggraph17``: Real-Time User-Guided Image Colorization (Zhang et al., SIGGRAPH 2017).

Input: L plus *local hints*, an ab map and a 0/1 mask where a user (or, in training, the ground
truth) revealed a colour. Without hints it colourises automatically. The network is a U-Net-like
stack: ``[::2]`` subsampling between conv1..conv4, dilated convs in conv5/conv6, three
transposed-conv up-steps each summed with a 3x3-conv shortcut from the encoder, and a
``tanh`` regression head giving ab at full resolution.

Two variants of one class:

* ``variant="full"``: the released network, layer for layer (including its unused 529-class
  head), so that the official checkpoint loads through :mod:`deepcolor.convert.siggraph17` with
  ``strict=True``. The official file feeds the mask uncentred (``mask_center=0``). It has no
  global-hints branch and refuses ``global_hints``.
* ``variant="compact"`` (the registered default): narrow layers for CPU, mask centred on 0.5,
  plus the paper's *global hints* idea: an ab histogram ``(B, 313)`` and/or a saturation
  ``(B, 1)`` go through a small MLP whose output is added, per channel, to the inputs of the
  three decoder blocks. (The paper injects them mid-network; in a network this small that
  path learns far more slowly, so the decoder, next to the output, takes them.)

Hint spreading (compact variant by default, ``propagate_hints``): after the network, each
hint's colour is carried over the region it was given in and no further. Its reach falls off
with the geodesic distance from the hint over the lightness image, so a lightness edge stops
it; the reached pixels move towards the hints of similar lightness, and the network's colours
stay wherever no hint reaches (:func:`deepcolor.hints.spread_hint_colours`, whose defaults were
chosen on bsds500 validation photos). So every hint shows on its own surface even where the
small network follows it only loosely, and changes nothing far away or behind an edge. The
``full`` variant stays the published network.

Training (:meth:`training_loss`) simulates hints from the ground truth the way the paper does
(:func:`deepcolor.hints.sample_hints_from_truth`: geometric count with p = 1/8, 1..9 px patches
revealing their mean colour) and, half of the time each, global hints from the truth; the loss
is a smooth-L1 (Huber) on normalised ab.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..color import AB_SCALE, NUM_AB_BINS, ab_histogram, normalize_ab, normalize_l
from ..errors import InvalidCondition
from ..hints import sample_hints_from_truth, saturation_hint, spread_hint_colours
from ..registry import register_colorizer
from ._layers import (
    DEPTHS,
    DILATIONS,
    colorful_images,
    conv_block,
    default_weights_for,
    pad_to_multiple,
    resolve_variant,
)
from .base import Colorizer

#: channels of conv1..conv7, then of the decoder blocks conv8, conv9, conv10
FULL_WIDTHS = (64, 128, 256, 512, 512, 512, 512, 256, 128, 128)
COMPACT_WIDTHS = (16, 32, 64, 96, 96, 96, 96, 64, 32, 32)
#: the released 529-class head (23 x 23 ab grid) on conv8; present for checkpoint fidelity
NUM_GRID_CLASSES = 529
#: hidden width of the compact variant's global-hints MLP
GLOBAL_HIDDEN = 64
GLOBAL_KEYS = ("histogram", "saturation")

VARIANTS: dict[str, dict[str, Any]] = {
    "full": {
        "widths": FULL_WIDTHS,
        "working_size": 256,
        "mask_center": 0.0,
        "global_branch": False,
        "propagate_hints": False,  # the released network, exactly as published
    },
    "compact": {
        "widths": COMPACT_WIDTHS,
        "working_size": 176,
        "mask_center": 0.5,
        "global_branch": True,
        "propagate_hints": True,
    },
}
SIZE_MULTIPLE = 8
#: hint simulation in training (Zhang et al. 2017)
HINT_P = 1 / 8
HINT_PATCH_SIZES = tuple(range(1, 10))
GLOBAL_HINT_RATE = 0.5  # each global hint is given to half the training images
#: smooth-L1 switches from quadratic to linear at 1 ab unit (as colorization-pytorch's Huber)
HUBER_BETA = 1.0 / AB_SCALE


def _decoder_block(channels: int, convs: int) -> nn.Sequential:
    """ReLU (of the up-step's sum), ``[Conv3x3, ReLU] * convs``, then BatchNorm."""
    layers: list[nn.Module] = [nn.ReLU(inplace=True)]
    for _ in range(convs):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.BatchNorm2d(channels))


def _batch(x: torch.Tensor, batch: int, what: str) -> torch.Tensor:
    if x.shape[0] == batch:
        return x
    if x.shape[0] == 1:
        return x.expand(batch, *x.shape[1:])
    raise InvalidCondition(f"{what} has batch size {x.shape[0]}, the image batch is {batch}")


@register_colorizer(
    "siggraph17",
    summary="Zhang et al. 2017 (SIGGRAPH): user-guided from point and global hints, automatic "
    "without (compact; --weights official: the authors' released model)",
    accepts=("hints", "global_hints"),
    weights="trained by DeepColor (shipped in deepcolor/weights/siggraph17 when present); "
    "variant='full' loads the official siggraph17 .pth via deepcolor.convert.siggraph17",
    default_weights=default_weights_for("siggraph17"),
)
class SIGGRAPH17Colorizer(Colorizer):
    """User-guided colourisation: L + local (and optional global) hints -> ab."""

    size_multiple = SIZE_MULTIPLE

    def __init__(
        self,
        variant: str = "compact",
        widths: list[int] | tuple[int, ...] | None = None,
        working_size: int | None = None,
        mask_center: float | None = None,
        global_branch: bool | None = None,
        hint_p: float = HINT_P,
        propagate_hints: bool | None = None,
        propagation_in_loss: bool = False,
    ) -> None:
        spec, size, widths = resolve_variant(VARIANTS, variant, working_size, widths, count=10)
        if not 0 < hint_p <= 1:
            raise InvalidCondition(f"hint_p must be in (0, 1], got {hint_p}")
        super().__init__(working_size=size)
        global_branch = spec["global_branch"] if global_branch is None else bool(global_branch)
        if variant == "full" and (widths != FULL_WIDTHS or global_branch):
            raise InvalidCondition(
                "variant='full' is the released network (paper widths, no global-hints branch) "
                "so that the official checkpoint loads; use variant='compact' to change it"
            )
        self.variant = variant
        # success probability of the geometric number of simulated training hints (mean (1-p)/p)
        self.hint_p = float(hint_p)
        # The small network follows sparse hints only loosely; spreading the hint colours
        # makes every hint count (see deepcolor.hints.spread_hint_colours).
        self.propagate_hints = bool(
            spec["propagate_hints"] if propagate_hints is None else propagate_hints
        )
        # settings passed to spread_hint_colours (empty: its tuned defaults)
        self.propagation: dict[str, float | bool] = {}
        # Train the network for what users see: its output after the spreading, so that it
        # learns to complement the spreading rather than to repeat it.
        self.propagation_in_loss = bool(propagation_in_loss)
        self.widths = widths
        self.mask_center = float(spec["mask_center"] if mask_center is None else mask_center)
        self.has_global_branch = global_branch

        c1, c2, c3, _, _, _, c7, c8, c9, c10 = widths
        cin = 4  # [L, a, b, mask]
        for i, (cout, depth, dilation) in enumerate(
            zip(widths[:7], DEPTHS, DILATIONS, strict=True), start=1
        ):
            self.add_module(f"conv{i}", conv_block(cin, cout, depth, dilation=dilation))
            cin = cout
        # decoder: x2 up-steps, each summed with a 3x3 conv of the encoder feature at that scale;
        # the ReLU comes after the sum, as the first layer of the next block
        self.up8 = nn.ConvTranspose2d(c7, c8, 4, stride=2, padding=1)
        self.short8 = nn.Conv2d(c3, c8, 3, padding=1)
        self.conv8 = _decoder_block(c8, convs=2)
        self.up9 = nn.ConvTranspose2d(c8, c9, 4, stride=2, padding=1)
        self.short9 = nn.Conv2d(c2, c9, 3, padding=1)
        self.conv9 = _decoder_block(c9, convs=1)
        self.up10 = nn.ConvTranspose2d(c9, c10, 4, stride=2, padding=1)
        self.short10 = nn.Conv2d(c1, c10, 3, padding=1)
        self.conv10 = nn.Sequential(
            nn.ReLU(inplace=True),
            nn.Conv2d(c10, c10, 3, padding=1),
            nn.LeakyReLU(0.2),
        )
        self.head = nn.Conv2d(c10, 2, 1)
        # The released file carries a 529-class head used only in its first training stage.
        self.grid_classifier = nn.Conv2d(c8, NUM_GRID_CLASSES, 1) if variant == "full" else None
        # global hints: [sqrt(histogram) * given, given, saturation * given, given] -> offsets
        # for the inputs of conv8, conv9 and conv10
        self.global_net = (
            nn.Sequential(
                nn.Linear(NUM_AB_BINS + 3, GLOBAL_HIDDEN),
                nn.ReLU(inplace=True),
                nn.Linear(GLOBAL_HIDDEN, c8 + c9 + c10),
            )
            if global_branch
            else None
        )

    # --- conditions -------------------------------------------------------------------------
    def _local_hints(self, hints: Any, L: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, h, w = L.shape
        if hints is None:
            zeros = L.new_zeros(b, 1, h, w)
            return zeros.expand(b, 2, h, w), zeros
        if not (isinstance(hints, (tuple, list)) and len(hints) == 2):
            raise InvalidCondition("hints must be a pair (hint_ab (B,2,H,W), mask (B,1,H,W))")
        hint_ab, mask = (torch.as_tensor(t, device=L.device, dtype=L.dtype) for t in hints)
        if hint_ab.dim() != 4 or hint_ab.shape[1] != 2 or mask.dim() != 4 or mask.shape[1] != 1:
            raise InvalidCondition(
                f"hints must be (B,2,H,W) ab and (B,1,H,W) mask maps, got shapes "
                f"{tuple(hint_ab.shape)} and {tuple(mask.shape)}"
            )
        if hint_ab.shape[-2:] != (h, w):  # e.g. hints drawn on another size: keep them crisp
            hint_ab = F.interpolate(hint_ab, size=(h, w), mode="nearest")
        if mask.shape[-2:] != (h, w):
            mask = F.interpolate(mask, size=(h, w), mode="nearest")
        mask = (mask > 0.5).to(L.dtype)
        return _batch(hint_ab, b, "hint ab") * mask, _batch(mask, b, "hint mask")

    def _global_features(self, global_hints: Any, L: torch.Tensor) -> torch.Tensor | None:
        if global_hints is None:
            return None
        if self.global_net is None:
            raise InvalidCondition(
                f"this {self.variant!r} siggraph17 has no global-hints branch (the released "
                "network has none); use the compact variant for histogram/saturation hints"
            )
        if not isinstance(global_hints, Mapping):
            raise InvalidCondition(
                'global_hints must be a dict with "histogram" and/or "saturation"'
            )
        unknown = sorted(set(global_hints) - set(GLOBAL_KEYS))
        if unknown:
            raise InvalidCondition(
                f"unknown global hints {', '.join(map(str, unknown))}; give "
                f"{' and/or '.join(GLOBAL_KEYS)}"
            )
        b = L.shape[0]
        histogram = global_hints.get("histogram")
        saturation = global_hints.get("saturation")
        if histogram is not None:
            histogram = torch.as_tensor(histogram, device=L.device, dtype=L.dtype)
            if histogram.dim() == 1:
                histogram = histogram.unsqueeze(0)
            if (
                histogram.dim() != 2
                or histogram.shape[1] != NUM_AB_BINS
                or bool((histogram < 0).any())
                or bool((histogram.sum(dim=1) <= 0).any())
            ):
                raise InvalidCondition(
                    f"global hint 'histogram' must be (B, {NUM_AB_BINS}) non-negative weights "
                    "over the ab bins (see deepcolor.color.ab_histogram)"
                )
            histogram = _batch(histogram / histogram.sum(dim=1, keepdim=True), b, "histogram")
        if saturation is not None:
            saturation = torch.as_tensor(saturation, device=L.device, dtype=L.dtype).reshape(-1, 1)
            if not bool(((saturation >= 0) & (saturation <= 1)).all()):
                raise InvalidCondition(
                    "global hint 'saturation' must be in [0, 1] (mean chroma / 110, see "
                    "deepcolor.hints.saturation_hint)"
                )
            saturation = _batch(saturation, b, "saturation")
        return self._encode_global(histogram, saturation, b, L)

    @staticmethod
    def _encode_global(
        histogram: torch.Tensor | None,
        saturation: torch.Tensor | None,
        batch: int,
        like: torch.Tensor,
        hist_given: torch.Tensor | None = None,
        sat_given: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(B, 316)``: each global hint times a given-flag, then the flag itself.

        The histogram enters as its square root (unit L2 norm whatever its spread), so that a
        photo with few colours does not produce a near-zero input.
        """
        ones = like.new_ones(batch, 1)
        if histogram is None:
            histogram, hist_given = like.new_zeros(batch, NUM_AB_BINS), ones * 0
        hist_given = ones if hist_given is None else hist_given
        if saturation is None:
            saturation, sat_given = like.new_zeros(batch, 1), ones * 0
        sat_given = ones if sat_given is None else sat_given
        return torch.cat(
            (histogram.sqrt() * hist_given, hist_given, saturation * sat_given, sat_given), dim=1
        )

    def _global_offsets(
        self, global_features: torch.Tensor | None, L: torch.Tensor
    ) -> tuple[torch.Tensor | float, ...]:
        """Per-channel offsets for the inputs of conv8, conv9, conv10 (0 without the branch)."""
        if self.global_net is None:
            return (0.0, 0.0, 0.0)
        if global_features is None:
            global_features = self._encode_global(None, None, L.shape[0], L)
        offsets = self.global_net(global_features)[:, :, None, None]
        return tuple(offsets.split(list(self.widths[7:]), dim=1))

    # --- the network ------------------------------------------------------------------------
    def _network(
        self,
        L: torch.Tensor,
        hint_ab: torch.Tensor,
        mask: torch.Tensor,
        global_features: torch.Tensor | None,
    ) -> torch.Tensor:
        if L.dim() != 4 or L.shape[1] != 1:
            raise InvalidCondition(f"L must be (B, 1, H, W), got shape {tuple(L.shape)}")
        height, width = L.shape[-2:]
        # pad L by repeating its edge, hints with "no hint"; only then centre the mask
        x = torch.cat(
            (
                pad_to_multiple(normalize_l(L), SIZE_MULTIPLE),
                pad_to_multiple(normalize_ab(hint_ab), SIZE_MULTIPLE, mode="constant"),
                pad_to_multiple(mask, SIZE_MULTIPLE, mode="constant") - self.mask_center,
            ),
            dim=1,
        )
        conv1 = self.conv1(x)
        conv2 = self.conv2(conv1[:, :, ::2, ::2])
        conv3 = self.conv3(conv2[:, :, ::2, ::2])
        conv4 = self.conv4(conv3[:, :, ::2, ::2])
        conv7 = self.conv7(self.conv6(self.conv5(conv4)))
        offsets = self._global_offsets(global_features, L)
        conv8 = self.conv8(self.up8(conv7) + self.short8(conv3) + offsets[0])
        conv9 = self.conv9(self.up9(conv8) + self.short9(conv2) + offsets[1])
        conv10 = self.conv10(self.up10(conv9) + self.short10(conv1) + offsets[2])
        ab = torch.tanh(self.head(conv10)) * AB_SCALE
        return ab[..., :height, :width]

    def forward(
        self,
        L: torch.Tensor,
        hints: Any = None,
        global_hints: Any = None,
        **conditions: Any,
    ) -> torch.Tensor:
        hint_ab, mask = self._local_hints(hints, L)
        ab = self._network(L, hint_ab, mask, self._global_features(global_hints, L))
        if self.propagate_hints and hints is not None:
            ab = spread_hint_colours(L, ab, hint_ab, mask, **self.propagation)
        return ab

    # --- training ---------------------------------------------------------------------------
    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Smooth-L1 on normalised ab with hints simulated from the ground truth.

        Randomness (hint count, places, sizes, which images get global hints) comes from
        torch's global generator, so seeding torch makes a loss reproducible.
        """
        L, ab = batch["L"], batch["ab"]
        hint_ab, mask = sample_hints_from_truth(ab, p=self.hint_p, patch_sizes=HINT_PATCH_SIZES)
        global_features = None
        if self.global_net is not None:
            b = L.shape[0]
            hist_given = (torch.rand(b, 1) < GLOBAL_HINT_RATE).to(L.device, L.dtype)
            sat_given = (torch.rand(b, 1) < GLOBAL_HINT_RATE).to(L.device, L.dtype)
            global_features = self._encode_global(
                ab_histogram(ab.float()).to(L.dtype),
                saturation_hint(ab).to(L.dtype),
                b,
                L,
                hist_given,
                sat_given,
            )
        pred = self._network(L, hint_ab.to(L.dtype), mask.to(L.dtype), global_features)
        if self.propagation_in_loss and self.propagate_hints:
            pred = spread_hint_colours(L, pred, hint_ab.to(pred.dtype), mask, **self.propagation)
        error = F.smooth_l1_loss(  # in float32 whatever the model's precision
            normalize_ab(pred.float()), normalize_ab(ab.float()), beta=HUBER_BETA, reduction="none"
        ).sum(dim=1)  # summed over a and b, as colorization-pytorch does
        keep = colorful_images(ab)
        if not bool(keep.any()):
            return pred.sum() * 0.0  # gray images carry no colour to learn
        return error[keep].mean()
