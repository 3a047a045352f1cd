"""The official ECCV16 checkpoint (Zhang, Isola & Efros 2016) into ``eccv16`` ``variant="full"``.

The released PyTorch weights are the conversion of the Caffe model
``colorization_release_v2.caffemodel``:

* file ``colorization_release_v2-9b330a0b.pth``
* URL ``https://colorizers.s3.us-east-2.amazonaws.com/colorization_release_v2-9b330a0b.pth``
  ("9b330a0b" is the start of the file's SHA-256), from ``richzhang/colorization``
  (BSD-2-Clause), where ``colorizers/eccv16.py`` loads it with ``strict=True``.

The simplest way: ``--model eccv16 --weights official`` (or ``deepcolor download
eccv16-official`` beforehand) downloads it, checks it, converts it once and caches the result
(:mod:`deepcolor.convert.official`). With a file fetched yourself, either::

    from deepcolor.convert.eccv16 import load_eccv16_checkpoint
    model = load_eccv16_checkpoint("colorization_release_v2-9b330a0b.pth")

or write a DeepColor weights folder once and use it everywhere::

    python -m deepcolor.convert.eccv16 colorization_release_v2-9b330a0b.pth weights/eccv16-official
    deepcolor colorize photo.jpg -o out/ --model eccv16 --weights weights/eccv16-official

The official forward is ``upsample4(model_out(softmax(model8(...)))) * 110`` with no
temperature; the converted model reproduces it at its default ``temperature=1`` (whether the
Caffe model's 1/0.38 logit scale was folded into the released weights is not documented, so a
``temperature`` passed to this model is relative to the released logits).
"""

from __future__ import annotations

import os
import sys

import torch

from . import (
    LayerTable,
    converter_parser,
    expand_layer_table,
    read_torch_checkpoint,
    remap_state_dict,
    write_weights_folder,
    zhang_encoder_layers,
)

OFFICIAL_FILE = "colorization_release_v2-9b330a0b.pth"
OFFICIAL_URL = f"https://colorizers.s3.us-east-2.amazonaws.com/{OFFICIAL_FILE}"
WHAT = "ECCV16 (colorization_release_v2)"

# official module -> our module, its kind and its weight shape (BatchNorm: its channel count).
# Official: Sequential blocks model1..model8 ([Conv, ReLU]*n, BN) plus the 1x1 model_out;
# model1..model7 end with a stride-2 conv in blocks 1 to 3.
_LAYERS: LayerTable = (
    *zhang_encoder_layers(in_channels=1),
    ("model8.0", "conv8.0", "deconv", (512, 256, 4, 4)),  # ConvTranspose2d k4 s2 p1
    ("model8.2", "conv8.2", "conv", (256, 256, 3, 3)),
    ("model8.4", "conv8.4", "conv", (256, 256, 3, 3)),
    ("model8.6", "classifier", "conv", (313, 256, 1, 1)),  # logits over the 313 bins
    ("model_out", "decoder", "conv_no_bias", (2, 313, 1, 1)),  # Caffe's class8_ab
)

KEY_MAP, OFFICIAL_SHAPES = expand_layer_table(_LAYERS)


def convert_eccv16_checkpoint(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official ECCV16 state dict -> the state dict of ``eccv16`` ``variant="full"``.

    Works with or without the BatchNorm ``num_batches_tracked`` entries; raises
    :class:`~deepcolor.errors.ModelUnavailable` on any missing, unexpected or misshapen key.
    """
    return remap_state_dict(state_dict, KEY_MAP, OFFICIAL_SHAPES, what=WHAT)


def load_eccv16_checkpoint(path: str | os.PathLike):  # -> ECCV16Colorizer
    """Build ``eccv16`` ``variant="full"`` from the official ``.pth`` (``strict=True``), in eval mode.

    ``path`` is the downloaded ``colorization_release_v2-9b330a0b.pth`` (see the module docs);
    a missing file raises :class:`~deepcolor.errors.ModelUnavailable` saying where to get it.
    """
    from ..models.eccv16 import ECCV16Colorizer

    source = read_torch_checkpoint(path, what=WHAT, file_name=OFFICIAL_FILE, url=OFFICIAL_URL)
    model = ECCV16Colorizer(variant="full")
    model.load_state_dict(convert_eccv16_checkpoint(source), strict=True)
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    """``python -m deepcolor.convert.eccv16 CHECKPOINT.pth OUT_DIR``: a weights folder."""
    parser = converter_parser("eccv16", "ECCV16", OFFICIAL_FILE, OFFICIAL_URL, model="eccv16")
    args = parser.parse_args(argv)
    return write_weights_folder(lambda: load_eccv16_checkpoint(args.checkpoint), args.out_dir)


if __name__ == "__main__":
    sys.exit(main())
