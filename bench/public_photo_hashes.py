"""Write study/public_photos.json: difference hashes of the public benchmark photos this project
knows (Kodak24, McMaster18, CBSD68, the ImageNet sample), which `python -m study prepare` warns
about (a participant could look the original up).

    .venv/bin/python bench/public_photo_hashes.py [--data DIR]

``--data`` defaults to ``$DEEPCOLOR_EVAL_DATA``; the sets are read from its ``eval/`` folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from study.public_sets import SIGNATURES, difference_hash  # noqa: E402

SETS = {
    "Kodak24": "kodak24",
    "McMaster18": "mcmaster18",
    "CBSD68 / BSDS500": "cbsd68",
    "ImageNet": "imagenet-sample",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("DEEPCOLOR_EVAL_DATA"))
    args = parser.parse_args()
    if not args.data:
        parser.error("give --data or set DEEPCOLOR_EVAL_DATA")
    sets = {}
    for name, folder in SETS.items():
        files = sorted((Path(args.data) / "eval" / folder).glob("*.[jp][pn]g"))
        hashes = [difference_hash(np.asarray(Image.open(f).convert("RGB"))) for f in files]
        sets[name] = [f"{h:016x}" for h in sorted(set(hashes))]
        print(f"{name}: {len(files)} photos, {len(sets[name])} distinct hashes")
    SIGNATURES.write_text(json.dumps({"sets": sets}, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {SIGNATURES.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
