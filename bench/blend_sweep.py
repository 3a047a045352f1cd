"""Sweep the ``blend`` weights: ab = a * unet_bins(T) + b * unet(gain 1), on held-out photos.

    .venv/bin/python bench/blend_sweep.py                      # bsds500 validation, the grid
    .venv/bin/python bench/blend_sweep.py 0.5:0.38:1.0 0.25:0.38:1.0   # chosen (a:T:b) points
    .venv/bin/python bench/blend_sweep.py --set kodak24 0.5:0.38:1.0   # an evaluation set

Each member's full-resolution ab is computed once per photo (through ColorizationPipeline, as
the app and the report do) and cached under ``runs/blend_sweep/``; a mix is then joined with the
photo's own L and scored with ``deepcolor.metrics``. Choose on the validation photos; measure an
evaluation set only for what was chosen.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from deepcolor import ColorizationPipeline, create_colorizer
from deepcolor.color import join_lab, lab_to_rgb
from deepcolor.images import to_uint8
from deepcolor.metrics import image_metrics

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TEMPERATURES = (0.38, 0.6, 1.0)
GRID = [(0.0, 0.38, b) for b in (0.5, 1.0, 1.5)] + [
    (a, t, b) for a in (0.25, 0.5, 0.75, 1.0) for t in TEMPERATURES for b in (0.0, 0.5, 1.0, 1.5)
]


def photos(set_name: str) -> list[np.ndarray]:
    if set_name == "bsds500-validation":
        table = pd.read_parquet(
            SHARED / "train/bsds500/data/validation-00000-of-00001.parquet", columns=["image"]
        )
        return [
            np.asarray(Image.open(io.BytesIO(c["bytes"])).convert("RGB")) for c in table["image"]
        ]
    files = sorted((SHARED / "eval" / set_name).glob("*.png"))
    if not files:
        raise SystemExit(f"no PNG photos in {SHARED / 'eval' / set_name}")
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


def member_outputs(set_name: str, images: list[np.ndarray], cache_dir: Path) -> dict:
    cache = cache_dir / f"{set_name}.npz"
    if cache.is_file():
        return dict(np.load(cache))
    out = {}
    regression = ColorizationPipeline(create_colorizer("unet", chroma_gain=1.0), device="cpu")
    for i, photo in enumerate(images):
        result = regression(photo)
        out[f"L{i}"], out[f"reg{i}"] = result.L, result.ab
    for t in TEMPERATURES:
        bins = ColorizationPipeline(create_colorizer("unet_bins", temperature=t), device="cpu")
        for i, photo in enumerate(images):
            out[f"bins{t}_{i}"] = bins(photo).ab
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **out)
    return out


def score(images, outputs, a: float, t: float, b: float) -> pd.Series:
    rows = []
    for i, photo in enumerate(images):
        ab = b * outputs[f"reg{i}"] + a * outputs[f"bins{t}_{i}"]
        L = torch.from_numpy(outputs[f"L{i}"])[None, None]
        ab_t = torch.from_numpy(np.ascontiguousarray(ab.transpose(2, 0, 1)))[None].to(L.dtype)
        rgb = lab_to_rgb(join_lab(L, ab_t))[0].permute(1, 2, 0).numpy()
        rows.append(image_metrics(photo, to_uint8(rgb)))
    return pd.DataFrame(rows).mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("points", nargs="*", help="a:T:b mixes (default: the grid)")
    parser.add_argument("--set", default="bsds500-validation", help="or kodak24, cbsd68, ...")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "runs" / "blend_sweep")
    args = parser.parse_args()
    points = [tuple(float(x) for x in p.split(":")) for p in args.points] or GRID
    if any(len(p) != 3 or p[1] not in TEMPERATURES for p in points):
        parser.error(f"each point is a:T:b with T one of {TEMPERATURES}")
    torch.set_num_threads(2)
    images = photos(args.set)
    outputs = member_outputs(args.set, images, args.cache_dir)
    for a, t, b in points:
        m = score(images, outputs, a, t, b)
        print(
            f"a={a:<5} T={t:<5} b={b:<4} CIEDE2000 {m.ciede2000:6.3f}  "
            f"colourfulness {m.colourfulness:6.2f}  PSNR {m.psnr:6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
