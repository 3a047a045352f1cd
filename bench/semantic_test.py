"""The semantic test of the data folder's README.md for one model (or the colour originals).

EfficientNet-Lite0 top-1/top-5 on imagenet-sample photos colourised by the model.

    .venv/bin/python bench/semantic_test.py gray
    .venv/bin/python bench/semantic_test.py unet --weights RUN/final --limit 200
    .venv/bin/python bench/semantic_test.py original
    .venv/bin/python bench/semantic_test.py exemplar --weights RUN/final --reference self

The photos are ``eval/imagenet-sample`` of the data folder (``--data``, default
``$DEEPCOLOR_EVAL_DATA``), or ``--folder``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from deepcolor.datasets import eval_data_folder
from deepcolor.errors import DeepColorError
from deepcolor.pipeline import ColorizationPipeline
from deepcolor.semantic import semantic_accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="registered model name, or 'original' for the colour photos")
    parser.add_argument("--weights", default="default", help="'default', a folder or a Hub id")
    parser.add_argument("--data", help="the data folder (default: $DEEPCOLOR_EVAL_DATA)")
    parser.add_argument(
        "--folder", type=Path, help="the photos (default: DATA/eval/imagenet-sample)"
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--reference",
        default=None,
        help="for models that need one: 'self' (the colour photo itself) or an image path",
    )
    args = parser.parse_args()
    try:
        folder = args.folder or eval_data_folder(args.data) / "eval" / "imagenet-sample"
    except DeepColorError as exc:
        parser.error(str(exc))
    if args.threads:
        torch.set_num_threads(args.threads)

    pipeline = None
    if args.model != "original":
        pipeline = ColorizationPipeline(args.model, weights=args.weights, device=args.device)
    start = time.perf_counter()
    conditions_for = None
    if args.reference == "self":
        conditions_for = lambda path: {"reference": str(path)}  # noqa: E731
    elif args.reference:
        conditions_for = lambda path: {"reference": args.reference}  # noqa: E731
    result = semantic_accuracy(
        pipeline, folder, limit=args.limit, progress=True, conditions_for=conditions_for
    )
    print(f"{args.model}: {result} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
