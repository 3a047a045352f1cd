"""Whether int8 (NNCF post-training quantisation of the OpenVINO export) keeps the colours:
CIEDE2000 between the float32 and the int8 OpenVINO photos over Kodak24, minus the photos the
quantisation was calibrated on (the package's example photos).

The DDColor models run with the formula weights of the data folder's ``ddcolor/README.md``
(rebuildable and deterministic; the published weights cannot be downloaded everywhere), so the
figures say how much int8 moves this network's colours, not the published models' own. Printed,
never asserted.

    .venv/bin/python bench/int8_check.py [--models ddcolor-tiny] [--data DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from skimage.color import deltaE_ciede2000, rgb2lab

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from test_ddcolor import formula_weights  # noqa: E402  (the data folder's formula, written once)

from deepcolor import ColorizationPipeline, colorizer_info  # noqa: E402
from deepcolor.datasets import eval_data_folder  # noqa: E402

EXAMPLES = ROOT / "deepcolor" / "examples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["ddcolor-tiny"])
    parser.add_argument("--data", type=Path, help="the data folder (default: DEEPCOLOR_EVAL_DATA)")
    args = parser.parse_args()
    data = eval_data_folder(args.data)
    calibrated = {p.stem.split("-")[0] for p in EXAMPLES.glob("*.jpg")}
    photos = [
        p for p in sorted((data / "eval" / "kodak24").glob("*.png")) if p.stem not in calibrated
    ]
    print(
        "| model | photos | CIEDE2000 float32 vs int8: mean | max | bar (mean <= 0.5, max <= 3) |"
    )
    print("|---|---|---|---|---|")
    for name in args.models:
        cls = colorizer_info(name).factory
        variant = "tiny" if name == "ddcolor-tiny" else "large"
        model = cls.from_state_dict(formula_weights(data / "ddcolor", variant))
        folder = Path(tempfile.mkdtemp()) / name
        model.save_pretrained(folder)
        pipes = {
            b: ColorizationPipeline(name, weights=str(folder), backend=b)
            for b in ("openvino", "openvino-int8")
        }
        means, worst = [], 0.0
        for path in photos:
            a, b = (pipes[k](path).rgb / 255.0 for k in pipes)
            d = deltaE_ciede2000(rgb2lab(a), rgb2lab(b))
            means.append(float(d.mean()))
            worst = max(worst, float(d.max()))
        mean = float(np.mean(means))
        holds = "holds" if mean <= 0.5 and worst <= 3 else "does not hold"
        print(f"| {name} | {len(photos)} | {mean:.3f} | {worst:.2f} | {holds} |", flush=True)


if __name__ == "__main__":
    main()
