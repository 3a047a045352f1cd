"""Video: accuracy, flicker, speed and memory of per-frame vs stabilised colourisation.

    .venv/bin/python bench/video_benchmark.py --data DATA              # the evaluation clips
    .venv/bin/python bench/video_benchmark.py --data DATA --tune       # choose the settings

``DATA`` is the evaluation data folder (default: ``$DEEPCOLOR_EVAL_DATA``).

Test clips with ground truth are rendered from still colour photos (``make_clip``): each clip is
two shots joined by a hard cut; a shot is a pan, a zoom, a pan with a zoom, or a pasted object (an
ellipse cut from another photo) moving across a slowly panning background. Photos, directions,
speeds and positions are drawn from a seeded generator (``EVAL_SEED`` with the landscape Kodak24
photos at 640x360; ``TUNE_SEED`` with the landscape BSDS500 *train* photos at 320x180 for
``--tune``, so the stabiliser's settings are never chosen on the evaluation clips).

Because the motion is known, every pixel of frame t has an exact position in frame t-1 (or none:
it left the frame, or the pasted object covers or uncovers it). Figures:

- CIEDE2000: the per-frame mean against the true frame (``deepcolor.metrics.ciede2000``).
- flicker: the mean ab change (CIELAB units) from frame t-1, carried to frame t along the true
  motion, to frame t, on pixels visible in both (away from the object's edge), over all pairs
  inside a shot. The true clip's own value is the floor (interpolation and rounding).
- first frame after each cut: whether the stabilised frame equals the per-frame result exactly.
- fades (``make_fade_clips``): single shots of ``FADE_SHOT`` frames that fade to black over
  their last ``FADE_FRAMES`` frames (the last one black) or from black over their first; the
  mean CIEDE2000 of the fading frames, per-frame vs stabilised, the worst frame's difference,
  and cuts detected in them (there are none).
- frames per second of ``deepcolor.video.colorize_video`` on an H.264 640x360 clip (decode,
  colourise, stabilise, encode), and peak memory (max RSS) of a 100- and a 2,000-frame clip.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from skimage.color import rgb2lab

from deepcolor import ColorizationPipeline
from deepcolor.datasets import eval_data_folder
from deepcolor.errors import DeepColorError
from deepcolor.images import load_uint8
from deepcolor.metrics import ciede2000
from deepcolor.registry import DEFAULT_AUTOMATIC
from deepcolor.video import DEFAULT_STABILIZER, StabilizerSettings, colorize_frames, colorize_video

EVAL_SEED = 2026
TUNE_SEED = 7
EVAL_SIZE = (640, 360)  # width, height
TUNE_SIZE = (320, 180)
SHOT_FRAMES = 30
CLIPS = 4  # two shots each: 4 x 2 x 30 = 240 frames
KINDS = ("pan", "zoom", "object", "pan+zoom")
MEMORY_SIZE = (256, 144)  # 2,000 frames of it kept in memory would be 221 MB
EDGE_MARGIN = 2  # pixels next to the pasted object's edge are left out of the flicker measure


# --- the clip recipe ------------------------------------------------------------------------------
@dataclass
class Shot:
    photo: np.ndarray  # uint8 (h, w, 3)
    centre: tuple[np.ndarray, np.ndarray]  # window centre at the first and last frame (photo px)
    scale: tuple[float, float]  # photo pixels per frame pixel, first and last frame
    patch: np.ndarray | None = None  # the pasted object's pixels and its mask
    mask: np.ndarray | None = None
    track: tuple[np.ndarray, np.ndarray] | None = None  # object's top-left, first and last frame


@dataclass
class Frame:
    rgb: np.ndarray
    matrix: np.ndarray  # 2x3: frame pixel -> photo pixel
    object_at: np.ndarray | None  # top-left of the object in the frame
    layer: np.ndarray  # bool (H, W): the object covers the pixel


def _landscape(photos: list[np.ndarray]) -> list[np.ndarray]:
    return [p for p in photos if p.shape[1] > p.shape[0]]


def make_shot(photos, kind: str, size: tuple[int, int], frames: int, rng) -> Shot:
    width, height = size
    photo = photos[rng.integers(len(photos))]
    ph, pw = photo.shape[:2]
    fit = min(pw / width, ph / height) * 0.98  # the largest scale whose window fits the photo
    zooming = kind in ("zoom", "pan+zoom")
    scales = (0.95 * fit, 0.65 * fit) if zooming else (0.8 * fit, 0.8 * fit)
    if zooming and rng.random() < 0.5:
        scales = scales[::-1]  # zoom out instead of in

    def centre_range(scale: float) -> tuple[np.ndarray, np.ndarray]:
        half = np.array([width, height]) * scale / 2
        return half, np.array([pw, ph]) - half

    low = np.maximum(*[centre_range(s)[0] for s in scales])
    high = np.minimum(*[centre_range(s)[1] for s in scales])
    if kind in ("pan", "pan+zoom"):
        start, end = rng.uniform(low, high), rng.uniform(low, high)
    else:  # zoom and object: a slow drift
        start = rng.uniform(low, high)
        end = np.clip(start + rng.uniform(-0.15, 0.15, 2) * (high - low), low, high)
    shot = Shot(photo, (start, end), scales)
    if kind == "object":
        donor = photos[rng.integers(len(photos))]
        ow, oh = int(width * 0.22), int(height * 0.28)
        oy, ox = rng.integers(0, donor.shape[0] - oh), rng.integers(0, donor.shape[1] - ow)
        yy, xx = np.mgrid[:oh, :ow]
        shot.patch = donor[oy : oy + oh, ox : ox + ow]
        shot.mask = ((xx - ow / 2 + 0.5) / (ow / 2)) ** 2 + (
            (yy - oh / 2 + 0.5) / (oh / 2)
        ) ** 2 < 1
        y0, y1 = rng.uniform(0.1, 0.6, 2) * height
        left_to_right = rng.random() < 0.5
        x0, x1 = (0.02 * width, 0.98 * width - ow)[:: 1 if left_to_right else -1]
        shot.track = (np.array([x0, y0]), np.array([x1, y1]))
    return shot


def render(shot: Shot, t: float, size: tuple[int, int]) -> Frame:
    width, height = size
    scale = shot.scale[0] + t * (shot.scale[1] - shot.scale[0])
    centre = shot.centre[0] + t * (shot.centre[1] - shot.centre[0])
    matrix = np.array(
        [[scale, 0, centre[0] - scale * width / 2], [0, scale, centre[1] - scale * height / 2]]
    )
    rgb = cv2.warpAffine(
        shot.photo, matrix, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    layer = np.zeros((height, width), bool)
    object_at = None
    if shot.patch is not None:
        object_at = np.round(shot.track[0] + t * (shot.track[1] - shot.track[0])).astype(int)
        x, y = object_at
        oh, ow = shot.mask.shape
        layer[y : y + oh, x : x + ow] = shot.mask
        region = rgb[y : y + oh, x : x + ow]
        region[shot.mask] = shot.patch[shot.mask]
    return Frame(rgb, matrix, object_at, layer)


def make_clip(photos, kinds: tuple[str, str], size, frames: int, rng) -> tuple[list[Frame], int]:
    """Two shots joined by a hard cut: (frames, index of the first frame after the cut)."""
    out: list[Frame] = []
    for kind in kinds:
        shot = make_shot(photos, kind, size, frames, rng)
        out.extend(render(shot, i / (frames - 1), size) for i in range(frames))
    return out, frames


def correspondence(previous: Frame, current: Frame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each pixel of ``current`` was in ``previous`` (map_x, map_y), and whether it was
    visible there (same layer, inside the frame, away from the object's edge)."""
    height, width = current.layer.shape
    ys, xs = np.mgrid[:height, :width].astype(np.float64)
    photo_x = current.matrix[0, 0] * xs + current.matrix[0, 2]
    photo_y = current.matrix[1, 1] * ys + current.matrix[1, 2]
    map_x = (photo_x - previous.matrix[0, 2]) / previous.matrix[0, 0]
    map_y = (photo_y - previous.matrix[1, 2]) / previous.matrix[1, 1]
    if current.object_at is not None:
        dx, dy = current.object_at - previous.object_at
        map_x = np.where(current.layer, xs - dx, map_x)
        map_y = np.where(current.layer, ys - dy, map_y)
    inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
    nearest_y = np.clip(np.round(map_y), 0, height - 1).astype(int)
    nearest_x = np.clip(np.round(map_x), 0, width - 1).astype(int)
    same_layer = previous.layer[nearest_y, nearest_x] == current.layer
    kernel = np.ones((2 * EDGE_MARGIN + 1,) * 2, np.uint8)
    layer8 = current.layer.astype(np.uint8)
    edge = cv2.dilate(layer8, kernel) != cv2.erode(layer8, kernel)
    visible = inside & same_layer & ~edge
    return map_x.astype(np.float32), map_y.astype(np.float32), visible


def correspondences(clip: list[Frame], cut: int) -> list[tuple | None]:
    """For each frame, its ``correspondence`` to the frame before (None: first of a shot)."""
    return [
        correspondence(clip[t - 1], clip[t]) if t > 0 and t != cut else None
        for t in range(len(clip))
    ]


def flicker(frames_rgb: list[np.ndarray], maps: list[tuple | None]) -> float:
    """Mean ab change along the true motion over the clip's pairs inside a shot."""
    total, count = 0.0, 0
    previous_ab = None
    for rgb, pair in zip(frames_rgb, maps, strict=True):
        ab = rgb2lab(rgb)[..., 1:].astype(np.float32)
        if pair is not None:
            map_x, map_y, visible = pair
            carried = cv2.remap(previous_ab, map_x, map_y, cv2.INTER_LINEAR)
            change = np.linalg.norm(ab - carried, axis=-1)[visible]
            total += float(change.sum())
            count += change.size
        previous_ab = ab
    return total / max(count, 1)


#: fade clips: one shot each, fading over FADE_FRAMES frames at its end (out) or start (in)
FADE_SHOT = 66
FADE_FRAMES = 16


def fade(clip: list[Frame], out: bool) -> tuple[list[Frame], range]:
    """The clip faded to black at its end (``out``) or from black at its start, as an editor's
    fade does (the encoded RGB scaled); and the fading frames."""
    count = len(clip)
    frames = range(count - FADE_FRAMES, count) if out else range(FADE_FRAMES)
    faded = []
    for i, frame in enumerate(clip):
        if i in frames:
            step = (i - frames.start + 1) if out else (frames.stop - i)
            k = 1.0 - step / FADE_FRAMES  # 0 at the last (first) frame: black
            rgb = np.clip(frame.rgb.astype(np.float32) * k + 0.5, 0, 255).astype(np.uint8)
            frame = replace(frame, rgb=rgb)
        faded.append(frame)
    return faded, frames


def make_fade_clips(photos, size, seed: int) -> list[tuple[list[Frame], range]]:
    """One clip of each kind of shot; the first two fade out, the other two fade in."""
    rng = np.random.default_rng(seed)
    photos = _landscape(photos)
    clips = []
    for i, kind in enumerate(KINDS):
        shot = make_shot(photos, kind, size, FADE_SHOT, rng)
        frames = [render(shot, t / (FADE_SHOT - 1), size) for t in range(FADE_SHOT)]
        clips.append(fade(frames, out=i < 2))
    return clips


def measure_fades(pipe, clips, settings: StabilizerSettings = DEFAULT_STABILIZER) -> dict:
    """Per-frame vs stabilised CIEDE2000 on the fading frames, and cuts detected in the clips."""
    frame_de, stable_de, false_cuts, worst = [], [], 0, -np.inf
    for clip, fading in clips:
        truth = [f.rgb for f in clip]
        out = list(colorize_frames(truth, pipe, settings=settings, keep_prediction=True))
        for i in fading:
            single, stable = (
                ciede2000(truth[i], out[i].predicted_rgb),
                ciede2000(truth[i], out[i].rgb),
            )
            frame_de.append(single)
            stable_de.append(stable)
            worst = max(worst, stable - single)
        false_cuts += sum(f.starts_shot for f in out[1:])
    return {
        "clips": len(clips),
        "frames": len(frame_de),
        "de_frame": float(np.mean(frame_de)),
        "de_stable": float(np.mean(stable_de)),
        "worst": float(worst),
        "false_cuts": false_cuts,
    }


def report_fades(name: str, r: dict) -> None:
    print(f"\n{name}: {r['frames']} fading frames in {r['clips']} clips (2 fade out, 2 fade in)")
    print("| | mean CIEDE2000 of the fading frames |")
    print("|---|---|")
    print(f"| per-frame | {r['de_frame']:.3f} |")
    print(f"| stabilised | {r['de_stable']:.3f} |")
    print(
        f"CIEDE2000 change {r['de_stable'] - r['de_frame']:+.3f}; worst frame "
        f"{r['worst']:+.3f} against per-frame; cuts detected where there is none: "
        f"{r['false_cuts']}"
    )


# --- measuring ------------------------------------------------------------------------------------
def read_photos(data: Path, which: str) -> list[np.ndarray]:
    if which == "kodak24":
        files = sorted((data / "eval" / "kodak24").glob("*.png"))
        return [load_uint8(f) for f in files]
    import pandas as pd

    table = pd.read_parquet(data / "train/bsds500/data/train-00000-of-00001.parquet")
    return [load_uint8(cell["bytes"]) for cell in table["image"]]


def make_clips(photos, size, seed: int) -> list[tuple[list[Frame], int]]:
    rng = np.random.default_rng(seed)
    photos = _landscape(photos)
    return [
        make_clip(photos, (KINDS[i % 4], KINDS[(i + 1 + i // 4) % 4]), size, SHOT_FRAMES, rng)
        for i in range(CLIPS)
    ]


class CachedPipe:
    """The pipeline with its predictions remembered, so that a sweep of stabiliser settings runs
    the model once per frame (the stabiliser never changes what the model sees)."""

    def __init__(self, pipe) -> None:
        self.pipe, self._cache = pipe, {}

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def predict_ab(self, L, **conditions):
        key = hashlib.sha1(L.numpy().tobytes()).hexdigest()
        if key not in self._cache:
            self._cache[key] = self.pipe.predict_ab(L, **conditions)
        return self._cache[key]


def measure(pipe, clips, settings: StabilizerSettings, baseline: dict | None = None) -> dict:
    """Per-frame vs stabilised on every clip: CIEDE2000, flicker, cuts. ``baseline``: the
    per-frame and true figures of an earlier call on the same clips (not measured again)."""
    keys = (
        ("de_stable", "fl_stable")
        if baseline
        else ("de_frame", "de_stable", "fl_frame", "fl_stable", "fl_true")
    )
    figures = dict.fromkeys(keys, 0.0)
    frames_total = cuts_ok = false_cuts = 0
    for clip, cut in clips:
        truth = [f.rgb for f in clip]
        out = list(colorize_frames(truth, pipe, settings=settings, keep_prediction=True))
        stable = [f.rgb for f in out]
        single = [f.predicted_rgb for f in out]
        weight = len(truth)
        figures["de_stable"] += sum(ciede2000(t, s) for t, s in zip(truth, stable, strict=True))
        maps = correspondences(clip, cut)
        figures["fl_stable"] += flicker(stable, maps) * weight
        if not baseline:
            figures["de_frame"] += sum(ciede2000(t, s) for t, s in zip(truth, single, strict=True))
            figures["fl_frame"] += flicker(single, maps) * weight
            figures["fl_true"] += flicker(truth, maps) * weight
        frames_total += weight
        cuts_ok += out[cut].starts_shot and np.array_equal(stable[cut], single[cut])
        false_cuts += sum(f.starts_shot for i, f in enumerate(out) if i not in (0, cut))
    result = dict(baseline or {})
    result.update({key: value / frames_total for key, value in figures.items()})
    result.update(frames=frames_total, cuts=len(clips), cuts_ok=cuts_ok, false_cuts=false_cuts)
    return result


def report(name: str, r: dict) -> None:
    print(f"\n{name}: {r['frames']} frames in {r['cuts']} clips (one hard cut each)")
    print("| | mean CIEDE2000 | flicker (mean ab change) |")
    print("|---|---|---|")
    print(f"| true clip (floor) | 0 | {r['fl_true']:.3f} |")
    print(f"| per-frame | {r['de_frame']:.3f} | {r['fl_frame']:.3f} |")
    print(f"| stabilised | {r['de_stable']:.3f} | {r['fl_stable']:.3f} |")
    print(
        f"stabilised/per-frame flicker {r['fl_stable'] / r['fl_frame']:.3f}, "
        f"stabilised/true {r['fl_stable'] / r['fl_true']:.3f}, "
        f"CIEDE2000 change {r['de_stable'] - r['de_frame']:+.3f}; "
        f"first frame after the cut = per-frame result in {r['cuts_ok']} of {r['cuts']} clips; "
        f"cuts detected where there is none: {r['false_cuts']}"
    )


TUNE_GRID = [(h, sigma) for h in (0.8, 0.9, 0.95, 0.98) for sigma in (4.0, 8.0, 16.0)]


#: the longest memory (time constant 1 / (1 - history), frames) that the tuning clips can judge:
#: two thirds of a shot, so that a shot is long enough to show the colours lagging behind
LONGEST_MEMORY = SHOT_FRAMES * 2 / 3


def tune(pipe, data: Path) -> None:
    """The stabiliser's settings on BSDS500 train clips: the least flicker whose CIEDE2000 is
    at most 0.1 above per-frame colourisation's, with every cut right and a memory of at most
    ``LONGEST_MEMORY`` frames."""
    clips = make_clips(read_photos(data, "bsds500"), TUNE_SIZE, TUNE_SEED)
    print(
        f"tuning on {len(clips)} clips from BSDS500 train photos at {TUNE_SIZE}, seed {TUNE_SEED}"
    )
    print(
        "| history | lightness_sigma | CIEDE2000 change | flicker / per-frame | cuts right | false cuts |"
    )
    print("|---|---|---|---|---|---|")
    cached, baseline, rows = CachedPipe(pipe), None, []
    for history, sigma in TUNE_GRID:
        settings = replace(DEFAULT_STABILIZER, history=history, lightness_sigma=sigma)
        r = measure(cached, clips, settings, baseline)
        baseline = baseline or {k: r[k] for k in ("de_frame", "fl_frame", "fl_true")}
        change, ratio = r["de_stable"] - r["de_frame"], r["fl_stable"] / r["fl_frame"]
        judged = 1 / (1 - history) <= LONGEST_MEMORY + 1e-9
        rows.append((judged and change <= 0.1 and r["cuts_ok"] == r["cuts"], ratio, history, sigma))
        print(
            f"| {history} | {sigma} | {change:+.3f} | {ratio:.3f} | {r['cuts_ok']}/{r['cuts']} | "
            f"{r['false_cuts']} |",
            flush=True,
        )
    print(f"true clips' flicker / per-frame: {baseline['fl_true'] / baseline['fl_frame']:.3f}")
    print(
        f"eligible: CIEDE2000 change <= +0.1, all cuts right, memory <= {LONGEST_MEMORY:.0f} frames"
    )
    eligible = sorted(row[1:] for row in rows if row[0])
    if eligible:
        print(f"chosen: history={eligible[0][1]}, lightness_sigma={eligible[0][2]}")


# --- speed and memory -----------------------------------------------------------------------------
def write_clip(frames: list[np.ndarray], path: Path, count: int | None = None, fps=25) -> None:
    """``count`` frames (default: all), going through ``frames`` there and back."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "fast"}
        for index in range(count or len(frames)):
            cycle, i = divmod(index, len(frames))
            rgb = frames[i if cycle % 2 == 0 else len(frames) - 1 - i]  # there and back
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def speed(pipe, clip_path: Path, frames: int) -> None:
    """Wall-clock frames per second, and CPU seconds per frame (all threads; steadier than the
    wall clock on a shared machine)."""
    for stabilize in (False, True):
        with tempfile.TemporaryDirectory() as tmp:
            wall, cpu = time.perf_counter(), time.process_time()
            colorize_video(clip_path, Path(tmp) / "out.mp4", pipe, stabilize=stabilize)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        label = "stabilised" if stabilize else "per-frame"
        print(
            f"{label}: {frames} frames at 640x360 in {wall:.1f} s = {frames / wall:.2f} fps "
            f"(wall clock); {cpu / frames:.3f} CPU s per frame"
        )


def peak_memory_child(clip: str, model: str) -> None:
    pipe = ColorizationPipeline(model, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        result = colorize_video(clip, Path(tmp) / "out.mp4", pipe)
    # VmHWM: this process's own peak (ru_maxrss would count the parent's, kept across exec)
    status = Path("/proc/self/status").read_text()
    peak_mb = int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1]) / 1024
    print(f"{result.frames} {peak_mb:.0f}")


def peak_memory(frames: list[np.ndarray], model: str, counts=(100, 2000)) -> None:
    """Max RSS of a fresh process colourising a 100- and a 2,000-frame clip."""
    small = [cv2.resize(f, MEMORY_SIZE, interpolation=cv2.INTER_AREA) for f in frames]
    with tempfile.TemporaryDirectory() as tmp:
        for count in counts:
            path = Path(tmp) / f"clip{count}.mp4"
            write_clip(small, path, count)
            out = subprocess.run(
                [sys.executable, __file__, "--peak-memory", str(path), "--model", model],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            size = "x".join(map(str, MEMORY_SIZE))
            print(f"{int(out[-2])} frames ({size}, {model}): peak memory {out[-1]} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="the data folder (default: $DEEPCOLOR_EVAL_DATA)")
    parser.add_argument("--model", default=DEFAULT_AUTOMATIC)
    parser.add_argument("--tune", action="store_true", help="sweep settings on BSDS500 clips")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-fades", action="store_true")
    parser.add_argument(
        "--fades-only", action="store_true", help="only the fade clips (no other figures)"
    )
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--memory-model",
        default="tint",
        help="model for the 100- vs 2,000-frame memory runs (default: tint; a model's own "
        "memory per batch does not depend on the clip's length, and 2,000 frames of a learned "
        "model take long on a CPU)",
    )
    parser.add_argument("--peak-memory", metavar="CLIP", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak_memory:
        return peak_memory_child(args.peak_memory, args.model)
    try:
        data = eval_data_folder(args.data)
    except DeepColorError as exc:
        parser.error(str(exc))
    pipe = ColorizationPipeline(args.model, device="cpu")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"model {args.model}, torch threads {torch.get_num_threads()}, load average {load}")
    if args.tune:
        return tune(pipe, data)
    print(f"settings: {DEFAULT_STABILIZER}")
    photos = read_photos(data, "kodak24")
    if not args.skip_fades or args.fades_only:
        start = time.perf_counter()
        fades = make_fade_clips(photos, EVAL_SIZE, EVAL_SEED)
        report_fades(f"Kodak24 fade clips, seed {EVAL_SEED}", measure_fades(pipe, fades))
        print(f"(measured in {time.perf_counter() - start:.0f} s)")
        if args.fades_only:
            return None
    clips = make_clips(photos, EVAL_SIZE, EVAL_SEED)
    start = time.perf_counter()
    report(f"Kodak24 clips, seed {EVAL_SEED}", measure(pipe, clips, DEFAULT_STABILIZER))
    print(f"(measured in {time.perf_counter() - start:.0f} s)")
    first = [f.rgb for f in clips[0][0]]
    if not args.skip_speed:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "clip.mp4"
            write_clip(first, path)
            speed(pipe, path, len(first))
    if not args.skip_memory:
        peak_memory(first, args.memory_model)


if __name__ == "__main__":
    main()
