"""The CPU backends side by side: torch eager float32 vs OpenVINO, for the DDColor models.

One run measures, on the CPU it runs on, with the default thread count:

- whole-photo time (1024x768, load to 8-bit RGB, median of ``--repeat`` after a warm-up) per
  backend and the ratio; each backend in its own process, the pipeline built by name from a
  weights folder, as a user's run is (so each peak resident memory is its own);
- the first photo on a fresh export cache (the export included) and, in a second process on the
  same cache, the pipeline's start and its first photo against a warm photo;
- equality over Kodak24 (``--data``): CIEDE2000 between the two backends' photos, mean and max;
- video: frames per second through the video path at 640x360 (``--frames`` frames).

Weights are random (seeded) and saved once to a temporary folder: a forward pass takes the same
time whatever the values, and equality holds for any weights. Figures are printed, never
asserted.

    .venv/bin/python bench/cpu_backend.py [--models ddcolor-tiny ddcolor] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deepcolor" / "examples" / "kodim23-parrots.jpg"
PHOTO_SIZE = (1024, 768)
VIDEO_SIZE = (640, 360)


def _gray_photo(size: tuple[int, int]):
    from PIL import Image

    return Image.open(EXAMPLE).convert("L").resize(size, Image.Resampling.BICUBIC)


def _save_random_weights(name: str, folder: Path) -> Path:
    import torch

    from deepcolor import create_colorizer

    target = folder / name
    if not (target / "config.json").is_file():
        torch.manual_seed(0)
        create_colorizer(name, weights=None).save_pretrained(target)
    return target


def measure_photos(name: str, weights: Path, backend: str, repeat: int) -> dict:
    """In this process: build the pipeline, time its first photo and ``repeat`` warm ones."""
    from deepcolor import ColorizationPipeline

    photo = _gray_photo(PHOTO_SIZE)
    start = time.perf_counter()
    pipe = ColorizationPipeline(name, weights=str(weights), device="cpu", backend=backend)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    pipe(photo)
    first_s = time.perf_counter() - start
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        pipe(photo)
        times.append(time.perf_counter() - start)
    return {
        "backend": pipe.backend.name,
        "build_s": build_s,
        "first_s": first_s,
        "median_s": statistics.median(times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "load": os.getloadavg()[0],
    }


def measure_video(name: str, weights: Path, backend: str, frames: int) -> dict:
    """Frames per second through the video path (stabilised), after a warm-up frame."""
    import numpy as np

    from deepcolor import ColorizationPipeline
    from deepcolor.video import colorize_frames

    pipe = ColorizationPipeline(name, weights=str(weights), device="cpu", backend=backend)
    base = np.asarray(_gray_photo(VIDEO_SIZE).convert("RGB"))
    clip = [np.roll(base, 4 * i, axis=1) for i in range(frames + 1)]  # a slow pan
    list(colorize_frames(clip[:1], pipe))
    start = time.perf_counter()
    done = sum(1 for _ in colorize_frames(clip[1:], pipe))
    return {"fps": done / (time.perf_counter() - start), "load": os.getloadavg()[0]}


def measure_equality(name: str, weights: Path, data: Path) -> dict:
    """CIEDE2000 between the torch and OpenVINO photos over a folder of photos."""
    import numpy as np
    from skimage.color import deltaE_ciede2000, rgb2lab

    from deepcolor import ColorizationPipeline

    pipes = {
        b: ColorizationPipeline(name, weights=str(weights), device="cpu", backend=b)
        for b in ("torch", "openvino")
    }
    means, worst = [], 0.0
    for path in sorted(data.glob("*.png")):
        a, b = (pipes[k](path).rgb / 255.0 for k in ("torch", "openvino"))
        difference = deltaE_ciede2000(rgb2lab(a), rgb2lab(b))
        means.append(float(difference.mean()))
        worst = max(worst, float(difference.max()))
    return {"photos": len(means), "mean": float(np.mean(means)), "max": worst}


def _child(args: list[str], cache: Path) -> dict:
    env = {**os.environ, "DEEPCOLOR_CACHE": str(cache)}
    env.pop("DEEPCOLOR_BACKEND", None)
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, env=env, cwd=ROOT
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["ddcolor-tiny", "ddcolor"])
    parser.add_argument("--repeat", type=int, default=3, help="warm photos timed per backend")
    parser.add_argument("--frames", type=int, default=30, help="video frames timed per backend")
    parser.add_argument("--data", type=Path, help="photos for equality (default: Kodak24)")
    parser.add_argument("--work", type=Path, help="folder for weights and caches (default: temp)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, name, weights, backend = args.child[:4]
        if kind == "photos":
            result = measure_photos(name, Path(weights), backend, args.repeat)
        elif kind == "video":
            result = measure_video(name, Path(weights), backend, args.frames)
        else:
            result = measure_equality(name, Path(weights), Path(backend))
        print(json.dumps(result))
        return 0

    import torch

    from deepcolor.datasets import eval_data_folder

    data = args.data or eval_data_folder() / "eval" / "kodak24"
    work = args.work or Path(tempfile.mkdtemp(prefix="deepcolor-bench-"))
    print(
        f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} threads (the default); photo {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]}, "
        f"median of {args.repeat} after a warm-up; video {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]}, "
        f"{args.frames} frames; load average at the start {os.getloadavg()[0]:.2f}"
    )
    rows = []
    for name in args.models:
        weights = _save_random_weights(name, work / "weights")
        cache = work / f"cache-{name}"
        common = [name, str(weights)]
        eager = _child(["--repeat", str(args.repeat), "--child", "photos", *common, "torch"], cache)
        fresh = _child(["--repeat", str(args.repeat), "--child", "photos", *common, "auto"], cache)
        second = _child(["--repeat", str(args.repeat), "--child", "photos", *common, "auto"], cache)
        video_torch = _child(
            ["--frames", str(args.frames), "--child", "video", *common, "torch"], cache
        )
        video_ov = _child(
            ["--frames", str(args.frames), "--child", "video", *common, "auto"], cache
        )
        same = _child(["--child", "equality", *common, str(data)], cache)
        rows.append((name, eager, fresh, second, video_torch, video_ov, same))

    print()
    print(
        "| model | backend | s / photo (median) | vs torch | peak RSS | vs torch | first photo, "
        "fresh cache (export incl.) | second run: start + first photo | first / warm | load |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, eager, fresh, second, *_ in rows:
        print(
            f"| {name} | torch | {eager['median_s']:.2f} | 1.00 | {eager['peak_rss_mb']:,.0f} MB "
            f"| 1.00 | {eager['first_s']:.2f} s | {eager['build_s']:.1f} + {eager['first_s']:.2f} s "
            f"| {eager['first_s'] / eager['median_s']:.2f} | {eager['load']:.1f} |"
        )
        print(
            f"| {name} | {second['backend']} | {second['median_s']:.2f} | "
            f"{second['median_s'] / eager['median_s']:.2f} | {second['peak_rss_mb']:,.0f} MB | "
            f"{second['peak_rss_mb'] / eager['peak_rss_mb']:.2f} | "
            f"{fresh['build_s'] + fresh['first_s']:.1f} s | "
            f"{second['build_s']:.1f} + {second['first_s']:.2f} s | "
            f"{second['first_s'] / second['median_s']:.2f} | {second['load']:.1f} |"
        )
    print()
    print(
        "| model | video fps torch | video fps OpenVINO | ratio | CIEDE2000 torch vs OpenVINO (mean / max) | photos |"
    )
    print("|---|---|---|---|---|---|")
    for name, _e, _f, _s, video_torch, video_ov, same in rows:
        print(
            f"| {name} | {video_torch['fps']:.2f} | {video_ov['fps']:.2f} | "
            f"{video_ov['fps'] / video_torch['fps']:.2f} | {same['mean']:.4f} / {same['max']:.3f} "
            f"| {same['photos']} |"
        )
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
