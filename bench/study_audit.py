"""The study audit's battery before and after the final treatment, per condition, on public
photos: how often each script rule names the fake (oracle, each model, sentinels).

"Before": the stimuli as the study made them earlier: the original's own pixels, each model's
output as the pipeline gives it, an oracle through the pipeline's bottleneck (ab at 256 x 256 and
back, bilinear), and sentinels with the original's colours inverted and exaggerated (ab x -1.6).
"After": the stimuli `python -m study prepare` makes now (study.treatment, study.prepare). The
figures are printed (and quoted in study/README.md), never asserted.

    .venv/bin/python bench/study_audit.py [--models unet,eccv16] [--imagenet 300] [--data DIR]

``--data`` defaults to ``$DEEPCOLOR_EVAL_DATA``; the photos are ``eval/kodak24`` and the first
``--imagenet`` colour photos of ``eval/imagenet-sample``.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deepcolor import ColorizationPipeline  # noqa: E402
from deepcolor.color import lab_to_rgb  # noqa: E402
from deepcolor.images import to_uint8  # noqa: E402
from deepcolor.processing import recombine, resize_smooth  # noqa: E402
from study.audit import RULES, audit_stimuli, features_of, format_audit  # noqa: E402
from study.prepare import color_photos, render_photo  # noqa: E402
from study.treatment import lab_of  # noqa: E402


def features(rgb: np.ndarray):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=0)
    return features_of(buffer.getvalue(), rgb)


def before(rgb: np.ndarray, outputs: dict) -> dict[str, np.ndarray]:
    L, ab = lab_of(rgb)
    small = resize_smooth(ab, (256, 256))
    oracle = recombine(L, resize_smooth(small, tuple(ab.shape[-2:])))
    lab = torch.cat([L, (ab * -1.6).clamp(-110, 110)], 1)
    sentinel = to_uint8(lab_to_rgb(lab)[0].permute(1, 2, 0).numpy())
    return {
        "real": rgb,
        "oracle": oracle,
        **{m: r.rgb for m, r in outputs.items()},
        "sentinel": sentinel,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="unet,eccv16")
    parser.add_argument("--imagenet", type=int, default=300)
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--after-only", action="store_true", help="skip the stimuli of before")
    parser.add_argument("--data", default=os.environ.get("DEEPCOLOR_EVAL_DATA"))
    args = parser.parse_args()
    if not args.data:
        parser.error("give --data or set DEEPCOLOR_EVAL_DATA")
    if args.threads:
        torch.set_num_threads(args.threads)
    eval_dir = Path(args.data) / "eval"
    files = sorted((eval_dir / "kodak24").glob("*.png"))
    files += sorted((eval_dir / "imagenet-sample").glob("*.jpg"))[: args.imagenet]
    photos, _ = color_photos(eval_dir, files, args.max_side)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    pipelines = {m: ColorizationPipeline(m, device="cpu") for m in models}
    stimuli = {"before": {}, "after": {}}
    sources: dict[str, str] = {}
    started = time.perf_counter()
    for index, (photo, rgb) in enumerate(photos.items()):
        image = Image.fromarray(rgb, "RGB")
        outputs = {m: p(image) for m, p in pipelines.items()}
        cached = {m: (lambda _image, r=r: r) for m, r in outputs.items()}
        after, sources[photo] = render_photo(rgb, index, ["oracle", *models], cached)
        labelled = [("after", after)]
        if not args.after_only:
            labelled.append(("before", before(rgb, outputs)))
        for label, renders in labelled:
            for condition, pixels in renders.items():
                stimuli[label].setdefault(condition, {})[photo] = features(pixels)
        if index % 25 == 0:
            print(
                f"{index + 1}/{len(photos)} photos, {time.perf_counter() - started:.0f} s",
                flush=True,
            )
    results = {"after": audit_stimuli(stimuli["after"], sources)}
    if not args.after_only:
        results["before"] = audit_stimuli(stimuli["before"])
    for label, result in results.items():
        print(f"\n== {label} ==\n{format_audit(result)}")
    conditions = ["oracle", *models, "sentinel"]
    if args.after_only:
        return 0
    print("\n| rule | " + " | ".join(conditions) + " |")
    print("|---|" + "---|" * len(conditions))
    for rule in RULES:
        cells = []
        for condition in conditions:
            b = results["before"].scores[condition][rule]
            a = results["after"].scores[condition][rule]
            cells.append(f"{b.accuracy * 100:.1f} -> {a.accuracy * 100:.1f} (p={a.p:.2g})")
        print(f"| {rule} | " + " | ".join(cells) + " |")
    for label, result in results.items():
        print(
            f"sentinel classifier {label}: {result.sentinel_accuracy * 100:.1f} % held out "
            f"({result.sentinel_statistic})"
        )
    print(f"{len(photos)} photos in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
