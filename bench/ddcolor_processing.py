"""Which processing around DDColor's network lands closer to the true colours: an oracle test.

The network is taken out of the question: each photo's own colour (its ab at DDColor's 512 x 512
working size) goes through each processing's way back to full size and into 8-bit RGB, and is
scored against the photo (CIEDE2000, the evaluation protocol's). The processing that loses less
of the true colour on the way is the better default.

- ``smooth``: ab of the photo resized with antialiasing, upsampled bilinearly, exact CIELAB.
- ``authors``: the photo resized as RGB with plain bilinear interpolation, OpenCV's float32
  CIELAB ab, nearest-neighbour upsampling, joined with OpenCV's L (piddnad/DDColor's steps).

usage: python bench/ddcolor_processing.py [--data DIR] [--sets kodak24,mcmaster18]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from skimage.color import deltaE_ciede2000, rgb2lab
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from deepcolor.color import rgb_to_lab  # noqa: E402
from deepcolor.datasets import eval_data_folder  # noqa: E402
from deepcolor.images import load_image  # noqa: E402
from deepcolor.processing import (  # noqa: E402
    DDColorAuthorsProcessing,
    SmoothProcessing,
    resize_smooth,
)

WORKING = (512, 512)


def oracle_smooth(rgb: np.ndarray) -> np.ndarray:
    processing = SmoothProcessing()
    lab = rgb_to_lab(torch.from_numpy(rgb).permute(2, 0, 1)[None])
    ab = resize_smooth(lab[:, 1:].float(), WORKING)
    full = processing.upsample_ab(ab, rgb.shape[:2])
    return processing.recombine(processing.lightness(rgb), full)


def oracle_authors(rgb: np.ndarray) -> np.ndarray:
    import cv2

    processing = DDColorAuthorsProcessing()
    small = cv2.resize(np.ascontiguousarray(rgb, dtype=np.float32), WORKING[::-1])
    ab = torch.from_numpy(cv2.cvtColor(small, cv2.COLOR_RGB2Lab)[..., 1:]).permute(2, 0, 1)[None]
    full = processing.upsample_ab(ab, rgb.shape[:2])
    return processing.recombine(processing.lightness(rgb), full)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None, help="evaluation data folder")
    parser.add_argument("--sets", default="kodak24,mcmaster18")
    args = parser.parse_args()
    root = args.data or eval_data_folder()
    print("| set | photos | smooth CIEDE2000 | authors CIEDE2000 | smooth vs authors |")
    print("|---|---|---|---|---|")
    for name in args.sets.split(","):
        photos = sorted((root / "eval" / name).glob("*.png"))
        scores = []
        for path in tqdm(photos, desc=name, leave=False):
            rgb = load_image(path).rgb
            truth = rgb2lab(rgb)
            smooth, authors = oracle_smooth(rgb), oracle_authors(rgb)
            scores.append(
                [
                    deltaE_ciede2000(truth, rgb2lab(smooth / 255.0)).mean(),
                    deltaE_ciede2000(truth, rgb2lab(authors / 255.0)).mean(),
                    deltaE_ciede2000(rgb2lab(smooth / 255.0), rgb2lab(authors / 255.0)).mean(),
                ]
            )
        s, a, d = np.mean(scores, axis=0)
        print(f"| {name} | {len(photos)} | {s:.3f} | {a:.3f} | {d:.3f} |")


if __name__ == "__main__":
    main()
