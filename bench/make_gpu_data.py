"""Build the training data folder that travels to the GPU machine (at most 64 MiB in all).

    .venv/bin/python bench/make_gpu_data.py .gpu/data/mix

Tiny ImageNet (78 photos of each of its 200 classes, 64x64) plus the 200 BSDS500 train photos
(481x321, labelled 200+i so that same-label exemplar references are the photo itself), and the
32 BSDS500 validation photos as the held-out split, in Hub layout (parquet).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import datasets  # noqa: E402
import numpy as np  # noqa: E402
from datasets import Features, Image, Value  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "train"
PER_CLASS = 78


def main(out: Path) -> None:
    features = Features({"image": Image(), "label": Value("int64")})
    tiny = datasets.load_dataset(str(SHARED / "tiny-imagenet"), split="train")
    labels = np.array(tiny["label"])
    keep = np.sort(np.concatenate([np.where(labels == c)[0][:PER_CLASS] for c in range(200)]))
    tiny = tiny.select(keep).select_columns(["image", "label"]).cast(features)
    bsds = datasets.load_dataset(str(SHARED / "bsds500"))

    def relabel(split: str, start: int) -> datasets.Dataset:
        photos = bsds[split].select_columns(["image"])
        return photos.add_column("label", list(range(start, start + len(photos)))).cast(features)

    (out / "data").mkdir(parents=True, exist_ok=True)
    train = datasets.concatenate_datasets([tiny, relabel("train", 200)])
    train.to_parquet(str(out / "data" / "train-00000-of-00001.parquet"))
    relabel("validation", 400).to_parquet(str(out / "data" / "validation-00000-of-00001.parquet"))
    print(f"{len(train)} training and {len(bsds['validation'])} validation photos in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else ".gpu/data/mix"))
