"""Large collections, measured as a user runs them: processes, a killed run resumed, a dataset.

    .venv/bin/python bench/archive_benchmark.py --data DATA            # all three
    .venv/bin/python bench/archive_benchmark.py --data DATA --only speed|kill|dataset

``DATA`` is the evaluation data folder (default: ``$DEEPCOLOR_EVAL_DATA``); the photos are crops
of its Kodak24 photos (``--photos`` of them, 384x256, seeded), written to a temporary folder.

- speed: ``deepcolor colorize IN -o OUT --model M`` (one process, torch's default threads) and
  the same under ``accelerate launch --multi_gpu --num_processes 2`` (on a machine without
  CUDA: two CPU processes over gloo, each with its share of the cores). Wall clock of the whole
  command, as a user waits for it, and photos per second, also once started (from the first
  photo finished to the last, from the manifest's times); the merged manifest is compared with
  the input list (every input exactly once).
- kill: a 2-process run whose second process is killed (SIGKILL) half-way, then the same command
  with ``--skip-existing``: no partial file under a final name, every input exactly once in the
  manifest, every output readable.
- dataset: a 100- and a 1,000-row Parquet dataset (crops of 192x128) streamed into a saved
  dataset by ``deepcolor colorize --dataset SRC --save-dataset DST``; the peak memory (VmHWM) of
  each run, a fresh process each.
The load average is printed with each measurement (the machine may be shared).
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from deepcolor.datasets import eval_data_folder
from deepcolor.errors import DeepColorError

ROOT = Path(__file__).resolve().parent.parent
SEED = 2026
LAUNCH = [
    sys.executable,
    "-m",
    "accelerate.commands.launch",
    "--multi_gpu",
    "--num_processes",
    "2",
    "--num_machines",
    "1",
    "--mixed_precision",
    "no",
    "--dynamo_backend",
    "no",
    "--main_process_port",
    "0",
]
CPU_ONLY = {"CUDA_VISIBLE_DEVICES": ""}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def crops(data: Path, count: int, size: tuple[int, int]) -> list[Image.Image]:
    """``count`` seeded crops (some mirrored) of the Kodak24 photos."""
    rng = np.random.default_rng(SEED)
    photos = [Image.open(p).convert("RGB") for p in sorted((data / "eval/kodak24").glob("*.png"))]
    out = []
    for i in range(count):
        photo = photos[i % len(photos)]
        width, height = size if photo.width > photo.height else size[::-1]
        x = int(rng.integers(0, photo.width - width + 1))
        y = int(rng.integers(0, photo.height - height + 1))
        crop = photo.crop((x, y, x + width, y + height))
        out.append(crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop)
    return out


def write_photos(data: Path, folder: Path, count: int) -> list[Path]:
    paths = []
    for i, crop in enumerate(crops(data, count, (384, 256))):
        path = folder / f"batch{i // 50}" / f"photo{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        crop.save(path)
        paths.append(path)
    return paths


def manifest_inputs(path: Path) -> list[str]:
    with path.open(newline="") as handle:
        return [row["input"] for row in csv.DictReader(handle)]


def check_once(manifest: Path, inputs: list[Path]) -> str:
    listed = manifest_inputs(manifest)
    expected = sorted(str(p) for p in inputs)
    if sorted(listed) == expected:
        return f"every input exactly once ({len(listed)} rows)"
    missing = len(set(expected) - set(listed))
    return f"MISMATCH: {len(listed)} rows, {len(set(listed))} distinct, {missing} inputs missing"


def steady_rate(manifest: Path) -> float:
    """Photos per second between the first and the last finished photo (no start-up)."""
    from datetime import datetime

    with manifest.open(newline="") as handle:
        stamps = sorted(datetime.fromisoformat(row["finished"]) for row in csv.DictReader(handle))
    return (len(stamps) - 1) / max((stamps[-1] - stamps[0]).total_seconds(), 1e-9)


def timed(command: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    return time.perf_counter() - start, done


def colorize(inputs: Path, out: Path, model: str, *extra: str) -> list[str]:
    return ["-m", "deepcolor", "colorize", str(inputs), "-o", str(out), "--model", model, *extra]


def speed(data: Path, work: Path, count: int, model: str) -> None:
    inputs = write_photos(data, work / "in", count)
    env = os.environ | CPU_ONLY
    rates, steady = {}, {}
    for label, launcher in (("1 process", [sys.executable]), ("2 processes", LAUNCH)):
        out = work / label.replace(" ", "-")
        before = loadavg()
        wall, done = timed([*launcher, *colorize(work / "in", out, model)], env)
        if done.returncode != 0:
            sys.exit(f"{label} failed:\n{done.stderr[-3000:]}")
        rates[label] = count / wall
        steady[label] = steady_rate(out / "manifest.csv")
        print(
            f"{label}: {count} photos in {wall:.1f} s = {rates[label]:.2f} photos/s "
            f"({steady[label]:.2f} photos/s from the first photo done to the last); "
            f"{check_once(out / 'manifest.csv', inputs)}; load average before {before}, "
            f"after {loadavg()}",
            flush=True,
        )
    print(
        f"throughput ratio, 2 processes / 1: {rates['2 processes'] / rates['1 process']:.2f} "
        f"wall clock, {steady['2 processes'] / steady['1 process']:.2f} once started"
    )


def _readable(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.load()
        return True
    except Exception:
        return False


def kill(data: Path, work: Path, count: int, model: str) -> None:
    inputs = write_photos(data, work / "in", count)
    out = work / "killed"
    command = [*LAUNCH, *colorize(work / "in", out, model)]
    env = os.environ | CPU_ONLY
    before = loadavg()
    run = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    victim, rows = None, 0
    while run.poll() is None:
        parts = list(out.glob("manifest.part-*.csv"))
        rows = sum(max(0, len(p.read_text().splitlines()) - 1) for p in parts)
        if rows >= count // 2:
            victim = next((p for p in parts if p.name.startswith("manifest.part-1-")), None)
            if victim is not None:
                break
        time.sleep(0.2)
    if victim is None:
        sys.exit("the run ended before half of it was done; use more --photos")
    pid = int(victim.stem.rsplit("-", 1)[1])
    os.kill(pid, signal.SIGKILL)
    code = run.wait()
    finals = [p for p in out.rglob("*.png") if not p.name.startswith(".")]
    temporary = [p for p in out.rglob(".deepcolor-*")]
    broken = [p for p in finals if not _readable(p)]
    print(
        f"killed process 1 (pid {pid}) after {rows} of {count} rows; the launcher exited with "
        f"{code}; {len(finals)} outputs under final names, {len(broken)} of them partial or "
        f"unreadable; {len(temporary)} temporary file(s) left (.deepcolor-*, never a final "
        f"name); load average before {before}",
        flush=True,
    )
    wall, done = timed([*command, "--skip-existing"], env)
    finals_after = [p for p in out.rglob("*.png") if not p.name.startswith(".")]
    with (out / "manifest.csv").open(newline="") as handle:
        statuses = [row["status"] for row in csv.DictReader(handle)]
    print(
        f"rerun with --skip-existing: exit {done.returncode} in {wall:.1f} s; "
        f"{check_once(out / 'manifest.csv', inputs)}; statuses "
        f"{ {s: statuses.count(s) for s in sorted(set(statuses))} }; "
        f"{len(finals_after)} outputs, {sum(not _readable(p) for p in finals_after)} unreadable; "
        f"parts left: {len(list(out.glob('manifest.part-*')))}; load average {loadavg()}"
    )
    said = [line for line in done.stdout.splitlines() if "written to" in line]
    print(f"  it said: {said[-1] if said else done.stdout[-300:]}")


def peak_rss_child(argv: list[str]) -> None:
    from deepcolor.cli import main

    code = main(argv)
    status = Path("/proc/self/status").read_text()
    peak_mb = int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1]) / 1024
    print(f"PEAK {code} {peak_mb:.0f}")


def dataset(data: Path, work: Path, model: str) -> None:
    import datasets

    photos = crops(data, 1000, (192, 128))
    features = datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string")})
    peaks = {}
    for count in (100, 1000):
        source = work / f"src{count}" / "data"
        source.mkdir(parents=True)
        table = datasets.Dataset.from_dict(
            {"image": photos[:count], "caption": [f"crop {i}" for i in range(count)]},
            features=features,
        )
        table.to_parquet(str(source / "train-00000-of-00001.parquet"))
        argv = ["colorize", "--dataset", str(source.parent), "--save-dataset"]
        argv += [str(work / f"dst{count}"), "--model", model]
        before = loadavg()
        wall, done = timed(
            [sys.executable, __file__, "--peak-rss", *argv],
            os.environ | CPU_ONLY | {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"},
        )
        line = next((x for x in done.stdout.splitlines() if x.startswith("PEAK")), None)
        if line is None:
            sys.exit(f"the {count}-row run failed:\n{done.stderr[-3000:]}")
        peaks[count] = float(line.split()[2])
        rows = len(datasets.load_dataset(str(work / f"dst{count}"), split="train"))
        print(
            f"{count} rows ({model}): peak memory {peaks[count]:.0f} MB, {wall:.1f} s, "
            f"{rows} rows in the saved dataset; load average before {before}, after {loadavg()}",
            flush=True,
        )
    print(f"peak memory at 1,000 rows / at 100: {peaks[1000] / peaks[100]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="the data folder (default: $DEEPCOLOR_EVAL_DATA)")
    parser.add_argument("--model", default="blend")
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument(
        "--dataset-model",
        default="tint",
        help="model of the dataset memory runs (default: tint: a model's own memory does not "
        "grow with the dataset, and 1,000 rows of a learned model take long on a CPU)",
    )
    parser.add_argument("--only", choices=("speed", "kill", "dataset"))
    parser.add_argument("--peak-rss", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_rss:
        return peak_rss_child(args.peak_rss)
    try:
        data = eval_data_folder(args.data)
    except DeepColorError as exc:
        parser.error(str(exc))
    print(f"{os.cpu_count()} CPUs; load average {loadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.only in (None, "speed"):
            speed(data, work / "speed", args.photos, args.model)
        if args.only in (None, "kill"):
            kill(data, work / "kill", args.photos, args.model)
        if args.only in (None, "dataset"):
            dataset(data, work / "dataset", args.dataset_model)
    return None


if __name__ == "__main__":
    main()
