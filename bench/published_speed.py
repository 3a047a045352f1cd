"""Seconds per 1024x768 photo and peak memory on the CPU it runs on: ddcolor-tiny, ddcolor and blend.

Each model runs in its own process (so each peak is its own): build the pipeline, colourise one
1024x768 photo once to warm up, then ``--repeat`` more times; the median and the process's peak
resident memory are printed, with the CPU time per photo (on a busy machine wall-clock time
includes waiting for other processes). ``ddcolor`` and ``ddcolor-tiny`` run with random weights (their
published weights cannot be downloaded everywhere; the time of a forward pass does not depend on
the values of the weights), ``blend`` with its shipped weights. Figures are printed, never
asserted.

    .venv/bin/python bench/published_speed.py [--repeat 3] [--threads 2] [--models ddcolor-tiny blend]
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "deepcolor" / "examples" / "kodim23-parrots.jpg"
MODELS = ("ddcolor-tiny", "ddcolor", "blend")
SIZE = (1024, 768)  # width, height
#: models timed with random weights (their published weights are a download)
RANDOM_WEIGHTS = {"ddcolor", "ddcolor-tiny", "ddcolor-artistic", "ddcolor-paper"}


def photo_1024x768():
    """The parrots example resized to 1024x768, as gray (what a user colourises)."""
    from PIL import Image

    return Image.open(EXAMPLE).convert("L").resize(SIZE, Image.Resampling.BICUBIC)


def measure_one(name: str, repeat: int, threads: int) -> dict:
    """Time ``name`` in this process; returns the figures as a dict."""
    import torch

    torch.set_num_threads(threads)
    from deepcolor import ColorizationPipeline, create_colorizer

    random_weights = name in RANDOM_WEIGHTS
    start = time.perf_counter()
    model = create_colorizer(name, weights=None if random_weights else "default")
    pipe = ColorizationPipeline(model, device="cpu")
    load_s = time.perf_counter() - start
    photo = photo_1024x768()
    start = time.perf_counter()
    pipe(photo)  # warm-up: first-call allocations, lazy initialisation
    first_s = time.perf_counter() - start
    times, cpu_times = [], []
    for _ in range(repeat):
        start, cpu_start = time.perf_counter(), time.process_time()
        result = pipe(photo)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    height, width = result.rgb.shape[:2]
    return {
        "model": name,
        "weights": "random (timing only)" if random_weights else "shipped",
        "parameters": sum(p.numel() for p in model.parameters()),
        "load_s": load_s,
        "first_s": first_s,
        "median_s": statistics.median(times),
        "min_s": min(times),
        "cpu_s": statistics.median(cpu_times),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "output": f"{width}x{height}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after the warm-up")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process: one model
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args.one, args.repeat, args.threads)))
        return 0
    print(
        f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
        f"{args.threads} torch threads; photo {SIZE[0]}x{SIZE[1]}, median of {args.repeat} runs "
        "after one warm-up"
    )
    print(
        "| model | weights | parameters | s / photo (median) | min | CPU s / photo | first call "
        "| load | peak RSS |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        command = [
            sys.executable,
            __file__,
            "--one",
            name,
            "--repeat",
            str(args.repeat),
            "--threads",
            str(args.threads),
        ]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
        if done.returncode != 0:
            reason = (done.stderr.strip().splitlines() or ["failed"])[-1]
            print(f"| {name} | - | - | failed: {reason} | | | | | |")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"| {r['model']} | {r['weights']} | {r['parameters']:,} | {r['median_s']:.2f} | "
            f"{r['min_s']:.2f} | {r['cpu_s']:.2f} | {r['first_s']:.2f} | {r['load_s']:.2f} | "
            f"{r['peak_rss_mb']:,.0f} MB |"
        )
    print(
        "Random weights time the network exactly as the published ones would; the published "
        "ddcolor weights add their download (912 MB, ddcolor-tiny 220 MB) once. On a shared "
        "machine the wall-clock figures include waiting for other processes; CPU s is the "
        "model's own cost (summed over its threads)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
