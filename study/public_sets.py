"""Photos from public benchmark sets, which a participant could look up.

A participant who finds the published file of a study photo (a reverse image search, or the
set's well-known file names) knows which image of the trial is the original without judging
colour. ``prepare`` warns when photos look like those of a set this project knows: by file name
(``kodim01``, ImageNet's ``n01440764``, the Berkeley ids of CBSD68) or by a 64-bit difference
hash of the picture, which survives resizing and re-encoding (``public_photos.json``, made by
``bench/public_photo_hashes.py`` from the evaluation data).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

SIGNATURES = Path(__file__).with_name("public_photos.json")
NAME_PATTERNS = {
    "Kodak24": re.compile(r"^kodim\d\d$", re.IGNORECASE),
    "ImageNet": re.compile(r"^(ILSVRC\d{4}_(val|test)_\d{8}|n\d{8}(_\d+)?)$", re.IGNORECASE),
    "CBSD68 / BSDS500": re.compile(r"^\d{5,6}$"),
}
MAX_DISTANCE = 3  # differing bits of 64: resized or re-encoded copies: 2 at most (Kodak24, CBSD68
# at 512 and 300 px, JPEG quality 70); unrelated photos and synthetic gradients: 6 or more


def difference_hash(rgb: np.ndarray) -> int:
    """64 bits: whether each of 8x8 cells of a 9x8 gray thumbnail is brighter than its right
    neighbour (the usual dHash)."""
    gray = Image.fromarray(np.ascontiguousarray(rgb)).convert("L")
    small = np.asarray(gray.resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int("".join("1" if b else "0" for b in bits), 2)


@cache
def _known() -> dict[str, list[int]]:
    if not SIGNATURES.is_file():
        return {}
    data = json.loads(SIGNATURES.read_text(encoding="utf-8"))
    return {name: [int(h, 16) for h in hashes] for name, hashes in data["sets"].items()}


def public_set_of(name: str, rgb: np.ndarray) -> str | None:
    """The public set the photo ``name`` (its file name without extension) with pixels ``rgb``
    seems to come from, or None."""
    stem = Path(name).name
    for set_name, pattern in NAME_PATTERNS.items():
        if pattern.match(stem):
            return set_name
    signature = difference_hash(rgb)
    for set_name, hashes in _known().items():
        if any((signature ^ h).bit_count() <= MAX_DISTANCE for h in hashes):
            return set_name
    return None


def public_photo_warning(photos: dict[str, np.ndarray]) -> str | None:
    """A warning naming the photos that look like a public set's, or None."""
    found: dict[str, list[str]] = {}
    for name, rgb in photos.items():
        set_name = public_set_of(name, rgb)
        if set_name is not None:
            found.setdefault(set_name, []).append(name)
    if not found:
        return None
    count = sum(len(v) for v in found.values())
    listed = "; ".join(
        f"{s}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''}"
        for s, names in found.items()
    )
    return (
        f"warning: {count} of {len(photos)} photos look like photos of public benchmark sets "
        f"({listed}). A participant who looks up the published file knows which image is the "
        "original without judging colour; photos of your own that were never published make "
        "a sounder study."
    )
