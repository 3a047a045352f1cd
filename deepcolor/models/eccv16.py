"""``eccv16``: Colorful Image Colorization (Zhang, Isola & Efros, ECCV 2016).

The network classifies every pixel (at a quarter of the input's resolution) into the 313
in-gamut ab bins of :func:`deepcolor.color.ab_bin_centers`; colours come from the *annealed
mean* of that distribution (softmax of ``logits / T``, weighted bin centres; T = 0.38 in the
paper). Training uses soft-encoded targets (5 nearest bins, Gaussian sigma 5) and a
cross-entropy rebalanced towards rare, saturated colours (prior mixed with uniform, lambda 0.5).

Two variants of one class:

* ``variant="full"``: the paper's architecture, layer for layer, so that the official released
  checkpoint loads through :mod:`deepcolor.convert.eccv16` with ``strict=True``. It keeps the
  released 1x1 ``decoder`` (313 -> 2, the Caffe ``class8_ab`` layer) so that its output is the
  official one: at ``temperature=1`` (its default) it computes exactly
  ``upsample4(decoder(softmax(logits))) * 110``.
* ``variant="compact"`` (the registered default): the same topology with narrow layers for CPU,
  decoded with the annealed mean over the bin centres (default T = 0.38).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..color import NUM_AB_BINS, annealed_mean, denormalize_ab, normalize_l
from ..errors import InvalidCondition
from ..registry import register_colorizer
from ._layers import (
    DEPTHS,
    DILATIONS,
    check_temperature,
    colorful_images,
    conv_block,
    default_weights_for,
    pad_to_multiple,
    rebalanced_cross_entropy,
    resolve_variant,
)
from .base import Colorizer

#: channels of conv1..conv8 (conv8 is the up-sampling decoder block)
FULL_WIDTHS = (64, 128, 256, 512, 512, 512, 512, 256)
COMPACT_WIDTHS = (16, 32, 64, 96, 96, 96, 96, 64)
#: which of conv1..conv7 (see _layers.DEPTHS, DILATIONS) end with a stride-2 conv
STRIDE_2 = (True, True, True, False, False, False, False)

VARIANTS: dict[str, dict[str, Any]] = {
    "full": {"widths": FULL_WIDTHS, "working_size": 256, "temperature": 1.0},
    "compact": {"widths": COMPACT_WIDTHS, "working_size": 176, "temperature": 0.38},
}
#: the grid the network's input must fit: three stride-2 convolutions
SIZE_MULTIPLE = 8
#: logits are predicted at 1/4 of the input's resolution
OUTPUT_STRIDE = 4


@register_colorizer(
    "eccv16",
    summary="Zhang et al. 2016 (ECCV): 313-bin ab classification, annealed-mean colours "
    "(compact; --weights official: the authors' released model)",
    accepts=("temperature",),
    weights="trained by DeepColor (shipped in deepcolor/weights/eccv16 when present); "
    "variant='full' loads the official colorization_release_v2 .pth via deepcolor.convert.eccv16",
    default_weights=default_weights_for("eccv16"),
)
class ECCV16Colorizer(Colorizer):
    """Classification over the 313 ab bins with annealed-mean decoding."""

    size_multiple = SIZE_MULTIPLE

    def __init__(
        self,
        variant: str = "compact",
        widths: list[int] | tuple[int, ...] | None = None,
        working_size: int | None = None,
        temperature: float | None = None,
    ) -> None:
        spec, size, widths = resolve_variant(VARIANTS, variant, working_size, widths, count=8)
        super().__init__(working_size=size)
        if variant == "full" and widths != FULL_WIDTHS:
            raise InvalidCondition(
                "variant='full' has the paper's widths (it must load the official checkpoint); "
                "use variant='compact' for other widths"
            )
        self.variant = variant
        self.widths = widths
        self.temperature = check_temperature(temperature, spec["temperature"])

        cin = 1
        for i, (cout, depth, dilation, stride2) in enumerate(
            zip(widths[:7], DEPTHS, DILATIONS, STRIDE_2, strict=True), start=1
        ):
            block = conv_block(cin, cout, depth, dilation=dilation, stride_last=2 if stride2 else 1)
            self.add_module(f"conv{i}", block)
            cin = cout
        # conv8 up-samples x2 (H/8 -> H/4) and refines; no BN, as in the paper
        c8 = widths[7]
        self.conv8 = nn.Sequential(
            nn.ConvTranspose2d(cin, c8, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c8, c8, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c8, c8, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(c8, NUM_AB_BINS, 1)
        # The official net decodes with a stored 1x1 conv (normally the bin centres / 110);
        # the compact one uses the bin centres directly, so nothing there can drift in training.
        self.decoder = nn.Conv2d(NUM_AB_BINS, 2, 1, bias=False) if variant == "full" else None

    # --- the network ------------------------------------------------------------------------
    def _padded_logits(self, L: torch.Tensor) -> torch.Tensor:
        if L.dim() != 4 or L.shape[1] != 1:
            raise InvalidCondition(f"L must be (B, 1, H, W), got shape {tuple(L.shape)}")
        x = pad_to_multiple(normalize_l(L), SIZE_MULTIPLE)
        for i in range(1, 9):
            x = getattr(self, f"conv{i}")(x)
        return self.classifier(x)

    @staticmethod
    def _crop_logits(logits: torch.Tensor, height: int, width: int) -> torch.Tensor:
        return logits[..., : math.ceil(height / OUTPUT_STRIDE), : math.ceil(width / OUTPUT_STRIDE)]

    def logits(self, L: torch.Tensor) -> torch.Tensor:
        """Unnormalised scores over the 313 bins, ``(B, 313, ceil(H/4), ceil(W/4))``."""
        return self._crop_logits(self._padded_logits(L), *L.shape[-2:])

    def decode(self, logits: torch.Tensor, temperature: float | None = None) -> torch.Tensor:
        """Logits -> ab in CIELAB units at the logits' resolution (annealed mean)."""
        t = check_temperature(temperature, self.temperature)
        if self.decoder is None:
            return annealed_mean(logits, t)
        probs = F.softmax(logits.float() / t, dim=1).to(logits.dtype)
        return denormalize_ab(self.decoder(probs))

    def forward(
        self, L: torch.Tensor, temperature: float | None = None, **conditions: Any
    ) -> torch.Tensor:
        height, width = L.shape[-2:]
        ab = self.decode(self._padded_logits(L), temperature)
        ab = F.interpolate(ab, scale_factor=OUTPUT_STRIDE, mode="bilinear", align_corners=False)
        return ab[..., :height, :width]

    @torch.no_grad()
    def bin_distribution(self, L: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Probabilities of the 313 bins, ``(B, 313, ceil(H/4), ceil(W/4))`` (eval mode).

        Pixel ``(y, x)`` of ``L`` is cell ``(y // 4, x // 4)``. With
        :func:`deepcolor.color.ab_bin_centers` this lets an app offer a point's likely colours.
        """
        t = check_temperature(temperature, 1.0)
        was_training = self.training
        self.eval()
        try:
            logits = self.logits(L)
        finally:
            self.train(was_training)
        return F.softmax(logits.float() / t, dim=1)

    # --- training ---------------------------------------------------------------------------
    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Class-rebalanced cross-entropy against soft-encoded targets; gray images left out."""
        L, ab = batch["L"], batch["ab"]
        logits = self.logits(L)
        # target ab per output cell: the mean colour of the 4x4 pixels it covers
        ab_small = F.adaptive_avg_pool2d(ab.float(), logits.shape[-2:])
        loss = rebalanced_cross_entropy(logits, ab_small)
        keep = colorful_images(ab)
        if not bool(keep.any()):
            return logits.sum() * 0.0  # nothing to learn from gray images, but keep the graph
        return loss[keep].mean()
