"""Build the training mix of the shipped models: Tiny ImageNet and BSDS500 subsets, Hub layout.

    python bench/make_training_data.py runs/data/mix                      # 78 photos per class
    python bench/make_training_data.py runs/data/mix50 --per-class 50
    python bench/make_training_data.py runs/data/cpu --per-class 100 --bsds-repeat 10

The sources are the ``train/tiny-imagenet`` and ``train/bsds500`` folders (Hub layout) of the
data folder (``--data``, default ``$DEEPCOLOR_EVAL_DATA``). The mix: ``--per-class`` Tiny
ImageNet photos of each of its 200 classes (64x64) plus the 200 BSDS500 train photos (481x321,
labelled 200+i so that a same-label exemplar reference is the photo itself) as the ``train``
split, and the 32 BSDS500 validation photos as the ``validation`` split. ``--per-class 100``
keeps all 20,000 Tiny ImageNet photos; ``--bsds-repeat K`` lists each BSDS photo K times, so
that random crops of the larger photos (closer to the evaluation photos) make up a bigger share
of each batch. Pass the output folder to ``accelerate launch -m train --dataset``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import datasets  # noqa: E402
import numpy as np  # noqa: E402
from datasets import Features, Image, Value  # noqa: E402

from deepcolor.datasets import eval_data_folder  # noqa: E402
from deepcolor.errors import DataUnavailable  # noqa: E402

PER_CLASS = 78


def main(out: Path, sources: Path, per_class: int = PER_CLASS, bsds_repeat: int = 1) -> None:
    features = Features({"image": Image(), "label": Value("int64")})
    tiny = datasets.load_dataset(str(sources / "tiny-imagenet"), split="train")
    labels = np.array(tiny["label"])
    keep = np.sort(np.concatenate([np.where(labels == c)[0][:per_class] for c in range(200)]))
    tiny = tiny.select(keep).select_columns(["image", "label"]).cast(features)
    bsds = datasets.load_dataset(str(sources / "bsds500"))

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
    parser.add_argument("out", type=Path, help="the folder to write (Hub layout)")
    parser.add_argument("--data", default=None, help="data folder (default: $DEEPCOLOR_EVAL_DATA)")
    parser.add_argument(
        "--per-class", type=int, default=PER_CLASS, help="Tiny ImageNet photos per class"
    )
    parser.add_argument(
        "--bsds-repeat", type=int, default=1, help="times each BSDS photo is listed"
    )
    args = parser.parse_args()
    if args.per_class < 1 or args.bsds_repeat < 1:
        parser.error("--per-class and --bsds-repeat must be at least 1")
    try:
        sources = eval_data_folder(args.data) / "train"
    except DataUnavailable as exc:
        parser.error(str(exc))
    main(args.out, sources, args.per_class, args.bsds_repeat)
