"""Sweep the ``blend`` weights: ab = a * unet_bins(T) + b * unet(gain 1), on held-out photos.

    .venv/bin/python bench/blend_sweep.py                      # bsds500 validation, the grid
    .venv/bin/python bench/blend_sweep.py 0.5:0.38:1.0 0.25:0.38:1.0   # chosen (a:T:b) points
    .venv/bin/python bench/blend_sweep.py --set kodak24 0.5:0.38:1.0   # an evaluation set

Each mix is the ``blend`` model itself with those members and weights, run through
ColorizationPipeline as the app and the report run it, and scored with ``deepcolor.metrics``.
Choose on the validation photos; measure an evaluation set only for what was chosen. The data
folder is ``--data`` (default: ``$DEEPCOLOR_EVAL_DATA``).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from heldout import bsds_validation_photos, mean_metrics

from deepcolor import ColorizationPipeline, create_colorizer
from deepcolor.datasets import eval_data_folder
from deepcolor.errors import DeepColorError
from deepcolor.images import load_uint8

TEMPERATURES = (0.38, 0.6, 1.0)
GRID = [(0.0, 0.38, b) for b in (0.5, 1.0, 1.5)] + [
    (a, t, b) for a in (0.25, 0.5, 0.75, 1.0) for t in TEMPERATURES for b in (0.0, 0.5, 1.0, 1.5)
]


def photos(set_name: str, data: str | None) -> list[np.ndarray]:
    if set_name == "bsds500-validation":
        return bsds_validation_photos(data=data)
    folder = eval_data_folder(data) / "eval" / set_name
    files = sorted(folder.glob("*.png"))
    if not files:
        raise SystemExit(f"no PNG photos in {folder}")
    return [load_uint8(f) for f in files]


def blend_pipeline(a: float, t: float, b: float) -> ColorizationPipeline:
    """``blend`` with ``b`` times ``unet`` (gain 1) plus ``a`` times ``unet_bins`` at ``T``."""
    members = [
        {"model": "unet", "weight": b, "kwargs": {"chroma_gain": 1.0}},
        {"model": "unet_bins", "weight": a, "kwargs": {"temperature": t}},
    ]
    return ColorizationPipeline(create_colorizer("blend", members=members), device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("points", nargs="*", help="a:T:b mixes (default: the grid)")
    parser.add_argument("--set", default="bsds500-validation", help="or kodak24, cbsd68, ...")
    parser.add_argument("--data", help="the data folder (default: $DEEPCOLOR_EVAL_DATA)")
    args = parser.parse_args()
    points = [tuple(float(x) for x in p.split(":")) for p in args.points] or GRID
    if any(len(p) != 3 or p[1] not in TEMPERATURES for p in points):
        parser.error(f"each point is a:T:b with T one of {TEMPERATURES}")
    torch.set_num_threads(2)
    try:
        images = photos(args.set, args.data)
    except DeepColorError as exc:
        parser.error(str(exc))
    for a, t, b in points:
        m = mean_metrics(blend_pipeline(a, t, b), images)
        print(
            f"a={a:<5} T={t:<5} b={b:<4} CIEDE2000 {m['ciede2000']:6.3f}  "
            f"colourfulness {m['colourfulness']:6.2f}  PSNR {m['psnr']:6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
