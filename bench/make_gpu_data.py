"""Build the training data folder that travels to the GPU machine (at most 64 MiB in all).

    .venv/bin/python bench/make_gpu_data.py .gpu/data/mix
    .venv/bin/python bench/make_gpu_data.py .gpu/data/cpu --per-class 100 --bsds-repeat 10

Tiny ImageNet (78 photos of each of its 200 classes, 64x64) plus the 200 BSDS500 train photos
(481x321, labelled 200+i so that same-label exemplar references are the photo itself), and the
32 BSDS500 validation photos as the held-out split, in Hub layout (parquet). For CPU runs, which
need not travel, ``--per-class 100`` keeps all of Tiny ImageNet's 20,000 photos and
``--bsds-repeat K`` lists each BSDS photo K times, so that random crops of the larger photos
(closer to the evaluation photos) make up a bigger share of each batch.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import datasets  # noqa: E402
import numpy as np  # noqa: E402
from datasets import Features, Image, Value  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "train"
PER_CLASS = 78


def main(out: Path, per_class: int = PER_CLASS, bsds_repeat: int = 1) -> None:
    features = Features({"image": Image(), "label": Value("int64")})
    tiny = datasets.load_dataset(str(SHARED / "tiny-imagenet"), split="train")
    labels = np.array(tiny["label"])
    keep = np.sort(np.concatenate([np.where(labels == c)[0][:per_class] for c in range(200)]))
    tiny = tiny.select(keep).select_columns(["image", "label"]).cast(features)
    bsds = datasets.load_dataset(str(SHARED / "bsds500"))

    def relabel(split: str, start: int) -> datasets.Dataset:
        photos = bsds[split].select_columns(["image"])
        return photos.add_column("label", list(range(start, start + len(photos)))).cast(features)

    (out / "data").mkdir(parents=True, exist_ok=True)
    train = datasets.concatenate_datasets([tiny] + [relabel("train", 200)] * bsds_repeat)
    train.to_parquet(str(out / "data" / "train-00000-of-00001.parquet"))
    relabel("validation", 400).to_parquet(str(out / "data" / "validation-00000-of-00001.parquet"))
    print(f"{len(train)} training and {len(bsds['validation'])} validation photos in {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=Path(".gpu/data/mix"))
    parser.add_argument(
        "--per-class", type=int, default=PER_CLASS, help="Tiny ImageNet photos per class"
    )
    parser.add_argument(
        "--bsds-repeat", type=int, default=1, help="times each BSDS photo is listed"
    )
    args = parser.parse_args()
    if args.per_class < 1 or args.bsds_repeat < 1:
        parser.error("--per-class and --bsds-repeat must be at least 1")
    main(args.out, args.per_class, args.bsds_repeat)
