"""The held-out photos that bench scripts choose settings on: bsds500's validation split.

32 photos of the data folder's ``train/bsds500`` (no CBSD68 photo among them), never an
evaluation set, so that settings chosen here can be reported on Kodak24, McMaster18 and CBSD68
honestly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from deepcolor.datasets import eval_data_folder
from deepcolor.images import load_uint8
from deepcolor.metrics import image_metrics

BSDS_VAL = Path("train/bsds500/data/validation-00000-of-00001.parquet")


def bsds_validation_photos(
    limit: int | None = None, data: str | Path | None = None
) -> list[np.ndarray]:
    """The first ``limit`` (default: all 32) validation photos as ``(H, W, 3)`` uint8 arrays.

    ``data``: the data folder holding ``train/bsds500`` (default: ``DEEPCOLOR_EVAL_DATA``).
    """
    table = pd.read_parquet(eval_data_folder(data) / BSDS_VAL, columns=["image"])
    return [load_uint8(cell["bytes"]) for cell in table["image"].tolist()[:limit]]


def mean_metrics(pipe, images: list[np.ndarray], **conditions) -> dict[str, float]:
    """PSNR, CIEDE2000 and colourfulness of ``pipe`` on ``images``, averaged."""
    rows = [image_metrics(photo, pipe(photo, **conditions).rgb) for photo in images]
    return pd.DataFrame(rows)[["psnr", "ciede2000", "colourfulness"]].mean().to_dict()
