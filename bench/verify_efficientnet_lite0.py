"""Check the EfficientNet-Lite0 conversion on the 974 photos of imagenet-sample.

The converted timm model must give the same top-1 class as the package's own reference model on
at least 99 % of the photos. Prints the agreement and both models' top-1 accuracy.

    .venv/bin/python bench/verify_efficientnet_lite0.py [--data DIR | --folder DIR]

The photos are ``eval/imagenet-sample`` of the data folder (``--data``, default
``$DEEPCOLOR_EVAL_DATA``), or ``--folder``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from deepcolor.convert.efficientnet_lite0 import efficientnet_lite0_pretrained, reference_model
from deepcolor.datasets import eval_data_folder
from deepcolor.errors import DeepColorError
from deepcolor.images import load_uint8
from deepcolor.semantic import centre_crop, classifier_input, read_labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="the data folder (default: $DEEPCOLOR_EVAL_DATA)")
    parser.add_argument(
        "--folder", type=Path, help="the photos (default: DATA/eval/imagenet-sample)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    try:
        folder = args.folder or eval_data_folder(args.data) / "eval" / "imagenet-sample"
    except DeepColorError as exc:
        parser.error(str(exc))

    torch.set_grad_enabled(False)
    converted = efficientnet_lite0_pretrained(in_chans=3).eval()
    reference = reference_model().eval()
    items = read_labels(folder)
    labels = torch.tensor([label for _, label in items])
    top_converted, top_reference, max_diff = [], [], 0.0
    start = time.perf_counter()
    for i in range(0, len(items), args.batch_size):
        crops = [centre_crop(load_uint8(path)) for path, _ in items[i : i + args.batch_size]]
        x = classifier_input(crops)
        a, b = converted(x), reference(x)
        max_diff = max(max_diff, float((a - b).abs().max()))
        top_converted.append(a.argmax(1))
        top_reference.append(b.argmax(1))
    pc, pr = torch.cat(top_converted), torch.cat(top_reference)
    n = len(items)
    agree = float((pc == pr).float().mean())
    print(f"images: {n} ({time.perf_counter() - start:.1f} s)")
    print(
        f"top-1 agreement converted vs reference: {100 * agree:.2f} % ({int((pc == pr).sum())}/{n})"
    )
    print(f"top-1 converted (timm):   {100 * float((pc == labels).float().mean()):.2f} %")
    print(f"top-1 reference (package): {100 * float((pr == labels).float().mean()):.2f} %")
    print(f"largest logit difference: {max_diff:.2e}")
    print("PASS" if agree >= 0.99 else "FAIL: agreement below 99 %")


if __name__ == "__main__":
    main()
