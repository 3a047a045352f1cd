"""Choose the shipped `unet`'s chroma gains on bsds500's validation photos.

The regression model hedges towards gray; multiplying its ab by a gain restores colour. Two
settings are chosen here, never on the evaluation sets:

- faithful (the model's default, ``chroma_gain`` in its config): the gain with the lowest mean
  CIEDE2000;
- vivid (``unet`` at gain 3.0; the report's vivid setting is now ``blend vivid``, chosen the
  same way by ``bench/blend_sweep.py``): the largest gain whose mean CIEDE2000 is still no worse
  than the constant ``tint`` baseline's on the same photos.

    .venv/bin/python bench/choose_chroma_gain.py [--data DIR] [--weights FOLDER] [--gains 1,1.5,...]
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch
from heldout import bsds_validation_photos, mean_metrics

from deepcolor import ColorizationPipeline, create_colorizer
from deepcolor.errors import DeepColorError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="default", help="unet weights (default: shipped)")
    parser.add_argument("--gains", default="1,1.5,2,2.5,3,3.5,4")
    parser.add_argument("--data", help="the data folder (default: $DEEPCOLOR_EVAL_DATA)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        images = bsds_validation_photos(data=args.data)
    except DeepColorError as exc:
        parser.error(str(exc))
    tint = mean_metrics(ColorizationPipeline(create_colorizer("tint"), device="cpu"), images)
    pipe = ColorizationPipeline(create_colorizer("unet", weights=args.weights), device="cpu")
    rows = []
    for gain in (float(g) for g in args.gains.split(",")):
        rows.append({"gain": gain, **mean_metrics(pipe, images, chroma_gain=gain)})
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(f"tint: {tint}")
    print(table.to_string(index=False))
    faithful = table.loc[table.ciede2000.idxmin(), "gain"]
    allowed = table[table.ciede2000 <= tint["ciede2000"]]
    vivid = allowed.gain.max() if len(allowed) else float("nan")
    print(f"faithful gain {faithful}, vivid gain {vivid}")


if __name__ == "__main__":
    main()
