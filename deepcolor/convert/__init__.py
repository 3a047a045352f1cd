"""Converters from foreign checkpoints into DeepColor / timm layouts: one file per checkpoint.

Shared here: reading a ``.pth`` file with an error a person can act on, and applying an
explicit key map with shape assertions (every converter states each foreign key it expects).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import DeepColorError, ModelUnavailable
from ..weights import read_state_dict

#: BatchNorm's step counter: torch >= 0.4.1 writes it, older checkpoints lack it
NUM_BATCHES_TRACKED = "num_batches_tracked"
#: rows of (foreign module, our module, kind, shape): see :func:`expand_layer_table`
LayerTable = tuple[tuple[str, str, str, tuple[int, ...]], ...]


def converter_parser(
    module: str, what: str, file_name: str, url: str, model: str
) -> argparse.ArgumentParser:
    """The command line of ``python -m deepcolor.convert.<module> CHECKPOINT.pth OUT_DIR``."""
    parser = argparse.ArgumentParser(
        prog=f"python -m deepcolor.convert.{module}",
        description=f"Convert the official {what} checkpoint ({file_name}, from {url}) into a "
        f"DeepColor weights folder for `--model {model} --weights OUT_DIR`.",
    )
    parser.add_argument("checkpoint", help=f"the downloaded {file_name}")
    parser.add_argument("out_dir", help="folder to write (save_pretrained layout)")
    return parser


def write_weights_folder(build: Callable[[], Any], out_dir: str) -> int:
    """Save the model ``build()`` returns as a weights folder: exit status 0, or 1 with the
    error on stderr."""
    try:
        build().save_pretrained(out_dir)
    except DeepColorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out_dir}")
    return 0


def zhang_encoder_layers(in_channels: int) -> LayerTable:
    """Rows for model1..model7 of Zhang et al.'s released networks (ECCV16 and SIGGRAPH17 share
    them): ``[Conv3x3, ReLU] * depth`` then BatchNorm, to our ``conv1``..``conv7``.

    Widths 64, 128, 256, 512, 512, 512, 512 and depths 2, 2, 3, 3, 3, 3, 3; strides and the
    dilation 2 of blocks 5 and 6 leave no trace in the weights' shapes.
    """
    rows = []
    cin = in_channels
    for block, (width, depth) in enumerate(
        zip((64, 128, 256, 512, 512, 512, 512), (2, 2, 3, 3, 3, 3, 3), strict=True), start=1
    ):
        for i in range(depth):
            shape = (width, cin if i == 0 else width, 3, 3)
            rows.append((f"model{block}.{2 * i}", f"conv{block}.{2 * i}", "conv", shape))
        rows.append((f"model{block}.{2 * depth}", f"conv{block}.{2 * depth}", "bn", (width,)))
        cin = width
    return tuple(rows)


def read_torch_checkpoint(
    path: str | os.PathLike, *, what: str, file_name: str, url: str
) -> dict[str, torch.Tensor]:
    """The state dict in a ``.pth`` file (tensors only, loaded on the CPU, nothing executed).

    A missing or unreadable file raises :class:`ModelUnavailable` naming the official file and
    where to get it: nothing is downloaded here (``--weights official`` does that).
    """
    path = Path(path).expanduser()
    how = (
        f"download {file_name} from {url} and pass its path, or let DeepColor fetch and convert "
        "it (`--weights official`)"
    )
    if not path.is_file():
        raise ModelUnavailable(f"the {what} checkpoint {path} does not exist: {how}")
    # some tools wrap the weights as {"state_dict": ...}; the official files are plain dicts
    return read_state_dict(path, wrapper="state_dict", advice=f"; {how}")


def remap_state_dict(
    source: Mapping[str, torch.Tensor],
    key_map: Mapping[str, str],
    shapes: Mapping[str, tuple[int, ...]],
    *,
    what: str,
) -> dict[str, torch.Tensor]:
    """Rename ``source``'s keys through ``key_map`` (foreign -> ours), asserting every shape.

    ``shapes`` gives the expected foreign shape of each key of ``key_map``. Every mapped key
    must be present except BatchNorm's ``num_batches_tracked`` (filled with 0 when absent);
    a key the map does not know is an error, as a shape mismatch is.
    """
    unexpected = sorted(set(source) - set(key_map))
    missing = sorted(
        k for k in key_map if k not in source and not k.endswith("." + NUM_BATCHES_TRACKED)
    )
    if unexpected or missing:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (first: {', '.join(missing[:5])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (first: {', '.join(unexpected[:5])})")
        raise ModelUnavailable(f"not an official {what} checkpoint: {'; '.join(parts)}")
    out: dict[str, torch.Tensor] = {}
    wrong = []
    for src, dst in key_map.items():
        tensor = source.get(src)
        if tensor is None:  # num_batches_tracked only (checked above)
            tensor = torch.tensor(0, dtype=torch.long)
        if tuple(tensor.shape) != tuple(shapes[src]):
            wrong.append(f"{src}: {tuple(tensor.shape)} instead of {tuple(shapes[src])}")
        out[dst] = tensor
    if wrong:
        raise ModelUnavailable(
            f"not an official {what} checkpoint: {len(wrong)} tensors have the wrong shape "
            f"({'; '.join(wrong[:5])})"
        )
    return out


_BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


def expand_layer_table(
    layers: LayerTable,
) -> tuple[OrderedDict[str, str], OrderedDict[str, tuple[int, ...]]]:
    """Layer table -> (foreign key -> our key, foreign key -> shape), in checkpoint order.

    Each row is ``(foreign module, our module, kind, shape)``; kind ``conv`` (weight + bias),
    ``deconv`` (ConvTranspose2d: weight ``(in, out, k, k)`` + bias), ``conv_no_bias`` or ``bn``
    (shape ``(channels,)``; weight, bias, running stats and ``num_batches_tracked``).
    """
    keys: OrderedDict[str, str] = OrderedDict()
    shapes: OrderedDict[str, tuple[int, ...]] = OrderedDict()
    for src, dst, kind, shape in layers:
        if kind == "bn":
            entries = [(t, shape) for t in _BN_TENSORS] + [("num_batches_tracked", ())]
        elif kind == "conv":
            entries = [("weight", shape), ("bias", (shape[0],))]
        elif kind == "deconv":  # ConvTranspose2d weights are (in, out, k, k)
            entries = [("weight", shape), ("bias", (shape[1],))]
        elif kind == "conv_no_bias":
            entries = [("weight", shape)]
        else:
            raise ValueError(f"unknown layer kind {kind!r}")
        for tensor, tensor_shape in entries:
            keys[f"{src}.{tensor}"] = f"{dst}.{tensor}"
            shapes[f"{src}.{tensor}"] = tuple(tensor_shape)
    return keys, shapes
