"""The official SIGGRAPH17 checkpoint (Zhang et al. 2017) into ``siggraph17`` ``variant="full"``.

The released PyTorch weights of the user-guided network (local hints only; the paper's
global-hints network was not released):

* file ``siggraph17-df00044c.pth``
* URL ``https://colorizers.s3.us-east-2.amazonaws.com/siggraph17-df00044c.pth``
  ("df00044c" is the start of the file's SHA-256), from ``richzhang/colorization``
  (BSD-2-Clause), where ``colorizers/siggraph17.py`` loads it with ``strict=True`` and feeds the
  hint mask uncentred (``mask_cent = 0``, our ``mask_center=0``, the full variant's default).
* ``richzhang/colorization-pytorch`` (MIT) publishes the same network as
  ``http://colorization.eecs.berkeley.edu/siggraph/models/caffemodel.pth`` (the Caffe weights,
  ``mask_cent = 0``) and ``.../pytorch.pth`` (retrained there, ``mask_cent = 0.5``: load it with
  ``load_siggraph17_checkpoint(path, mask_center=0.5)``).

The simplest way: ``--model siggraph17 --weights official`` (or ``deepcolor download
siggraph17-official`` beforehand) downloads it, checks it, converts it once and caches the result
(:mod:`deepcolor.convert.official`). With a file fetched yourself, either::

    from deepcolor.convert.siggraph17 import load_siggraph17_checkpoint
    model = load_siggraph17_checkpoint("siggraph17-df00044c.pth")

or write a DeepColor weights folder once::

    python -m deepcolor.convert.siggraph17 siggraph17-df00044c.pth weights/siggraph17-official
    deepcolor colorize photo.jpg -o out/ --model siggraph17 --weights weights/siggraph17-official
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

OFFICIAL_FILE = "siggraph17-df00044c.pth"
OFFICIAL_URL = f"https://colorizers.s3.us-east-2.amazonaws.com/{OFFICIAL_FILE}"
WHAT = "SIGGRAPH17 (siggraph17)"

# official module -> our module, its kind and its weight shape (BatchNorm: its channel count).
# Official: model1..model7 ([Conv, ReLU]*n, BN; [::2] subsampling between them), up-steps
# model8up/9up/10up summed with shortcuts model3short8/2short9/1short10, blocks model8/9/10 that
# start with a ReLU, the unused 529-class head model_class and the regression head model_out.
_LAYERS: LayerTable = (
    *zhang_encoder_layers(in_channels=4),
    ("model8up.0", "up8", "deconv", (512, 256, 4, 4)),
    ("model8.1", "conv8.1", "conv", (256, 256, 3, 3)),
    ("model8.3", "conv8.3", "conv", (256, 256, 3, 3)),
    ("model8.5", "conv8.5", "bn", (256,)),
    ("model9up.0", "up9", "deconv", (256, 128, 4, 4)),
    ("model9.1", "conv9.1", "conv", (128, 128, 3, 3)),
    ("model9.3", "conv9.3", "bn", (128,)),
    ("model10up.0", "up10", "deconv", (128, 128, 4, 4)),
    ("model10.1", "conv10.1", "conv", (128, 128, 3, 3)),
    ("model3short8.0", "short8", "conv", (256, 256, 3, 3)),
    ("model2short9.0", "short9", "conv", (128, 128, 3, 3)),
    ("model1short10.0", "short10", "conv", (128, 64, 3, 3)),
    ("model_class.0", "grid_classifier", "conv", (529, 256, 1, 1)),  # 23x23 ab grid, unused
    ("model_out.0", "head", "conv", (2, 128, 1, 1)),  # then tanh, x110
)

KEY_MAP, OFFICIAL_SHAPES = expand_layer_table(_LAYERS)


def convert_siggraph17_checkpoint(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official SIGGRAPH17 state dict -> the state dict of ``siggraph17`` ``variant="full"``.

    Works with or without the BatchNorm ``num_batches_tracked`` entries; raises
    :class:`~deepcolor.errors.ModelUnavailable` on any missing, unexpected or misshapen key.
    """
    return remap_state_dict(state_dict, KEY_MAP, OFFICIAL_SHAPES, what=WHAT)


def load_siggraph17_checkpoint(path: str | os.PathLike, mask_center: float = 0.0):
    """Build ``siggraph17`` ``variant="full"`` from an official ``.pth`` (``strict=True``), eval mode.

    ``path`` is the downloaded ``siggraph17-df00044c.pth`` (see the module docs); a missing
    file raises :class:`~deepcolor.errors.ModelUnavailable` saying where to get it.
    ``mask_center`` is 0 for the official file and colorization-pytorch's ``caffemodel.pth``,
    0.5 for its retrained ``pytorch.pth``.
    """
    from ..models.siggraph17 import SIGGRAPH17Colorizer

    source = read_torch_checkpoint(path, what=WHAT, file_name=OFFICIAL_FILE, url=OFFICIAL_URL)
    model = SIGGRAPH17Colorizer(variant="full", mask_center=mask_center)
    model.load_state_dict(convert_siggraph17_checkpoint(source), strict=True)
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    """``python -m deepcolor.convert.siggraph17 CHECKPOINT.pth OUT_DIR``: a weights folder."""
    parser = converter_parser(
        "siggraph17", "SIGGRAPH17", OFFICIAL_FILE, OFFICIAL_URL, model="siggraph17"
    )
    parser.add_argument(
        "--mask-center",
        type=float,
        default=0.0,
        help="0 for the official file (default); 0.5 for colorization-pytorch's pytorch.pth",
    )
    args = parser.parse_args(argv)
    return write_weights_folder(
        lambda: load_siggraph17_checkpoint(args.checkpoint, mask_center=args.mask_center),
        args.out_dir,
    )


if __name__ == "__main__":
    sys.exit(main())
