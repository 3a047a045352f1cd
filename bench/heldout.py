"""The held-out photos that bench scripts choose settings on: bsds500's validation split.

32 photos of ``../shared/data/train/bsds500`` (no CBSD68 photo among them), never an evaluation
set, so that settings chosen here can be reported on Kodak24, McMaster18 and CBSD68 honestly.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

BSDS_VAL = (
    Path(__file__).resolve().parents[2]
    / "shared/data/train/bsds500/data/validation-00000-of-00001.parquet"
)


def bsds_validation_photos(
    limit: int | None = None, data: str | Path | None = None
) -> list[np.ndarray]:
    """The first ``limit`` (default: all 32) validation photos as ``(H, W, 3)`` uint8 arrays.

    ``data``: the data folder holding ``train/bsds500`` (default: the one beside the checkout).
    """
    path = BSDS_VAL if data is None else Path(data) / BSDS_VAL.relative_to(BSDS_VAL.parents[3])
    out = []
    for cell in pd.read_parquet(path)["image"].tolist()[:limit]:
        with Image.open(io.BytesIO(cell["bytes"])) as im:
            out.append(np.asarray(im.convert("RGB")))
    return out
