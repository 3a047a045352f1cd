"""Do siggraph17's hints stay where they are given, and do right hints still help? One table.

    .venv/bin/python bench/hint_locality.py [--data DIR] [--limit N] [--heldout]

Three measurements of the shipped ``siggraph17`` (through the pipeline, as a user runs it):

* **Locality** (Kodak24): one hint per photo at a seeded random spot (uniform in the middle 90 %
  of each side), 5x5 working pixels, whose colour is the *opposite* hue of the truth there at
  chroma 40 (a wrong colour: what a hint does to the rest of the photo shows). Each output is
  compared with the same model's output without the hint: the CIEDE2000 change of the pixels
  farther than 10 % of the diagonal from the hint, its mean and the share of those pixels that
  changed by more than 5 (averaged over photos).
* **Two regions** (synthetic): a photo of two regions of equal lightness (L 60, faint noise)
  separated by a dark line; a hint in the left one; the mean change of the right one must stay
  below 1.0, and the left one must take the hint.
* **Ground-truth hints** (Kodak24): the evaluation report's protocol
  (:func:`deepcolor.hints.ground_truth_point_hints`, seed 0 + photo index): mean CIEDE2000
  against the originals with 10 and 50 hints.

``--heldout`` measures bsds500's validation photos instead of Kodak24 (where settings are
chosen); ``--set name=value`` passes a propagation setting to the model (for tuning).
The data folder is ``--data`` or the environment variable ``DEEPCOLOR_EVAL_DATA``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from skimage.color import deltaE_ciede2000, rgb2lab  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout import bsds_validation_photos  # noqa: E402

from deepcolor import ColorizationPipeline, create_colorizer  # noqa: E402
from deepcolor.datasets import eval_data_folder  # noqa: E402
from deepcolor.errors import DeepColorError  # noqa: E402
from deepcolor.hints import (  # noqa: E402
    PointHint,
    ground_truth_point_hints,
    wrong_colour_point_hint,
)
from deepcolor.images import load_uint8, to_uint8  # noqa: E402
from deepcolor.metrics import ciede2000, image_metrics, summarize, to_markdown  # noqa: E402

HINT_SIZE = 5  # working pixels, as the evaluation report's hints
WRONG_CHROMA = 40.0
FAR = 0.10  # of the photo's diagonal
CHANGED = 5.0  # CIEDE2000 units: a change a viewer sees
LOCALITY_SEED = 1
SWEEP_SEED = 0  # the evaluation report's
COUNTS = (10, 50)


def change(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Per-pixel CIEDE2000 between two uint8 RGB images."""
    return deltaE_ciede2000(rgb2lab(first / 255.0), rgb2lab(second / 255.0))


def locality(pipe: ColorizationPipeline, photos: list[np.ndarray]) -> pd.DataFrame:
    """One wrong-colour hint per photo: how much the pixels far from it change."""
    rows = []
    for i, original in enumerate(photos):
        hint = wrong_colour_point_hint(
            original, LOCALITY_SEED * 100_000 + i, chroma=WRONG_CHROMA, size=HINT_SIZE
        )
        moved = change(pipe(original).rgb, pipe(original, hints=[hint]).rgb)
        h, w = moved.shape
        ys, xs = np.mgrid[0:h, 0:w]
        distance = np.hypot(ys - hint.y * (h - 1), xs - hint.x * (w - 1))
        far = distance > FAR * np.hypot(h, w)
        rows.append(
            {
                "far_change": float(moved[far].mean()),
                "far_changed_share": float((moved[far] > CHANGED).mean()),
                "near_change": float(moved[~far].mean()),
            }
        )
    return pd.DataFrame(rows)


def two_region_photo(height: int = 240, width: int = 360) -> np.ndarray:
    """Gray uint8 RGB: two halves of equal lightness (L 60, faint noise) and a dark line between."""
    rng = np.random.default_rng(0)
    L = 60.0 + rng.normal(0.0, 0.7, size=(height, width))
    middle = width // 2
    L[:, middle - 4 : middle + 4] = 25.0
    lab = np.stack((L, np.zeros_like(L), np.zeros_like(L)), axis=-1)
    from skimage.color import lab2rgb

    return to_uint8(lab2rgb(lab))


def two_regions(pipe: ColorizationPipeline) -> dict[str, float]:
    """Hint the left region; the mean change of each region (the line and its border left out)."""
    photo = two_region_photo()
    hint = PointHint(x=0.25, y=0.5, a=20.0, b=35.0, size=HINT_SIZE)
    moved = change(pipe(photo).rgb, pipe(photo, hints=[hint]).rgb)
    middle = moved.shape[1] // 2
    return {
        "hinted_region_change": float(moved[:, : middle - 12].mean()),
        "other_region_change": float(moved[:, middle + 12 :].mean()),
    }


def ground_truth_sweep(
    pipe: ColorizationPipeline, photos: list[np.ndarray], counts=COUNTS, *, every_metric=False
) -> pd.DataFrame:
    """The evaluation report's hint sweep: one row per hint count, the mean of each metric
    (CIEDE2000 only unless ``every_metric``) over the photos."""
    rows = []
    for count in counts:
        for i, original in enumerate(photos):
            hints = ground_truth_point_hints(original, count, SWEEP_SEED + i, size=HINT_SIZE)
            output = pipe(original, hints=hints).rgb
            scores = (
                image_metrics(original, output)
                if every_metric
                else {"ciede2000": ciede2000(original, output)}
            )
            rows.append({"model": f"siggraph17, {count} hints", **scores})
    return summarize(pd.DataFrame(rows))


def locality_lines(table: pd.DataFrame, regions: dict[str, float]) -> list[str]:
    """The locality measurements as a Markdown table (value and bar per row)."""
    rows = [
        (
            "locality: mean change beyond 10 % of the diagonal",
            f"{table.far_change.mean():.2f}",
            "<= 8.0",
        ),
        (
            "locality: share of those pixels changed by more than 5",
            f"{100 * table.far_changed_share.mean():.0f} %",
            "<= 40 %",
        ),
        (
            "locality: mean change within 10 % of the diagonal",
            f"{table.near_change.mean():.2f}",
            "",
        ),
        (
            "two regions: mean change of the hinted region",
            f"{regions['hinted_region_change']:.2f}",
            "",
        ),
        (
            "two regions: mean change of the other region",
            f"{regions['other_region_change']:.2f}",
            "< 1.0",
        ),
    ]
    return ["| measurement | value | bar |", "|---|---|---|"] + [
        "| " + " | ".join(row) + " |" for row in rows
    ]


def locality_report(pipe: ColorizationPipeline, photos: list[np.ndarray]) -> list[str]:
    """Both locality measurements of ``pipe`` on ``photos``, as Markdown table lines."""
    return locality_lines(locality(pipe, photos), two_regions(pipe))


def kodak24(data: Path, limit: int | None) -> list[np.ndarray]:
    files = sorted((data / "eval" / "kodak24").glob("*.png"))[:limit]
    if not files:
        raise SystemExit(f"no Kodak24 photos under {data / 'eval' / 'kodak24'}")
    return [load_uint8(path) for path in files]


def parse_setting(text: str) -> tuple[str, float | bool]:
    name, _, value = text.partition("=")
    if value.lower() in ("true", "false"):
        return name, value.lower() == "true"
    return name, float(value)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        default=None,
        help="data folder with eval/kodak24 and train/bsds500 (default: $DEEPCOLOR_EVAL_DATA)",
    )
    parser.add_argument("--limit", type=int, help="use only the first N photos")
    parser.add_argument("--heldout", action="store_true", help="bsds500 validation photos")
    parser.add_argument("--counts", default="10,50", help="ground-truth hint counts ('' = none)")
    parser.add_argument("--set", action="append", default=[], help="propagation name=value")
    parser.add_argument(
        "--every-metric", action="store_true", help="the sweep with PSNR, SSIM, colourfulness"
    )
    args = parser.parse_args()
    try:
        data = eval_data_folder(args.data)
    except DeepColorError as exc:
        parser.error(str(exc))
    torch.set_num_threads(1)
    photos = bsds_validation_photos(args.limit, data) if args.heldout else kodak24(data, args.limit)
    model = create_colorizer("siggraph17")
    model.propagation = dict(parse_setting(s) for s in args.set)
    pipe = ColorizationPipeline(model, device="cpu")
    started = time.time()
    where = "bsds500 validation" if args.heldout else "Kodak24"
    table = locality(pipe, photos)
    regions = two_regions(pipe)
    counts = [int(c) for c in args.counts.split(",") if c]
    sweep = ground_truth_sweep(pipe, photos, counts, every_metric=args.every_metric)
    settings = model.propagation or "defaults"
    print(f"siggraph17 hints on {len(photos)} {where} photos; settings {settings}")
    lines = locality_lines(table, regions)
    bars = {10: "<= 7.3", 50: "<= 5.4"}
    lines += [
        f"| ground truth: CIEDE2000 with {count} hints | {value:.3f} | {bars.get(count, '')} |"
        for count, value in zip(counts, sweep.ciede2000, strict=True)
    ]
    print("\n".join(lines))

    if args.every_metric:
        print()
        print(to_markdown(sweep.drop(columns=["mse"])))
    print(f"({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
