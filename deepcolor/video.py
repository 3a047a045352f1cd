"""Video in and out, streamed, and temporal stabilisation of ab along optical flow.

A clip (a video file or a folder of numbered frames) is decoded one frame at a time, colourised in
small batches by a :class:`~deepcolor.pipeline.ColorizationPipeline`, stabilised and encoded, so
memory does not grow with the clip's length. Each output frame keeps its input frame's timestamp
(so frame count, frame rate, variable rates included, and duration match), the stream's size and
display rotation; audio streams are copied packet for packet, never re-encoded. The output is
written under a name that says ``incomplete`` and renamed only when the last frame is in.

Stabilisation (:class:`Stabilizer`): per-frame colourisation guesses each frame's colours anew,
so they flicker. The previous *stabilised* ab is carried to the current frame along dense optical
flow (OpenCV's DIS on L) and blended with the new prediction by a per-pixel confidence that falls
where the flow is unreliable: a lightness mismatch after warping (occlusions, new content) and a
forward-backward flow disagreement. When the frame matches the previous one poorly overall (the
mean of that confidence under a strict lightness tolerance is low), it starts a new shot (a cut):
its colours are the per-frame prediction, nothing is carried across. Fades are told apart from
cuts: the frame-wide change of light is taken out before the frames are compared, carried colours
fade with a darkening frame, a brightening one trusts its new predictions, and frames too dark to
compare (the black end of a fade) take their own prediction without starting a shot.
Flow and blending work on L and ab at a reduced "analysis" size (the model works smaller still);
the stabilised ab is upsampled and recombined with each frame's own full-resolution L, which is
never changed. The settings were chosen on clips made from BSDS500 training photos
(``bench/video_benchmark.py --tune``), never on the evaluation clips.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .color import rgb_to_luminance
from .errors import DeepColorError, InvalidVideo
from .images import IMAGE_SUFFIXES, load_image, to_uint8
from .pipeline import recombine, reference_tensor

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg"})
#: ``mp4``: H.264 (CRF 18) in MP4; ``lossless``: FFV1 RGB in Matroska; ``png``: a folder of frames
OUTPUT_FORMATS = ("mp4", "lossless", "png")
#: frames above this many pixels get a note that colours are predicted smaller (4K and up)
LARGE_FRAME_PIXELS = 1920 * 1088
#: pixels of full-resolution frames held at once for one model batch (bounds memory at 4K)
BATCH_PIXEL_BUDGET = 32_000_000
INCOMPLETE = ".incomplete-"


# --- stabilisation --------------------------------------------------------------------------------
@dataclass(frozen=True)
class StabilizerSettings:
    """How much of the past a frame's colours keep, and when the past is not trusted."""

    #: weight of the flow-carried previous result where the flow is fully trusted (0 = per-frame);
    #: colours follow a change of the prediction with a time constant of 1 / (1 - history) frames
    history: float = 0.95
    #: CIELAB L difference after warping at which the confidence has fallen to exp(-1/2)
    lightness_sigma: float = 16.0
    #: forward-backward flow disagreement (analysis pixels) at which confidence is exp(-1/2)
    consistency_sigma: float = 1.5
    #: cut detection: a frame starts a new shot (a cut) when the mean of the same confidence,
    #: computed with this lightness sigma instead, is below ``cut_confidence``
    cut_lightness_sigma: float = 6.0
    cut_confidence: float = 0.3
    #: longest side of the analysis size that flow and blending work at
    analysis_side: int = 480


DEFAULT_STABILIZER = StabilizerSettings()


class Stabilizer:
    """Carries stabilised ab from frame to frame; one instance per clip (or shot sequence)."""

    def __init__(self, settings: StabilizerSettings = DEFAULT_STABILIZER) -> None:
        import cv2

        self.settings = settings
        self._cv2 = cv2
        self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        self._previous: tuple[np.ndarray, np.ndarray] | None = None  # L, ab

    def __call__(self, L: np.ndarray, ab: np.ndarray) -> tuple[np.ndarray, bool]:
        """``L (h, w)`` and predicted ``ab (2, h, w)`` -> (stabilised ab, whether a shot starts).

        The first frame and the first frame after a cut are returned exactly as predicted.
        """
        L = np.ascontiguousarray(L, dtype=np.float32)
        starts_shot = True
        out = ab
        if self._previous is not None and self._previous[0].shape == L.shape:
            if _too_dark(L) or _too_dark(self._previous[0]):
                # the end of a fade to black, or the start of a fade from it: nothing to compare
                # and no colour to see; the frame takes its prediction and is no cut
                self._previous = (L, out)
                return out, False
            warped_ab, confidence, continuity = self._carry(L)
            if continuity >= self.settings.cut_confidence:
                weight = (self.settings.history * confidence)[None]
                out = (weight * warped_ab + (1.0 - weight) * ab).astype(np.float32)
                starts_shot = False
        self._previous = (L, out)
        return out, starts_shot

    def _carry(self, L: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
        """The previous result carried onto this frame, the per-pixel trust in it, and how well
        the two frames match overall (the cut score).

        A fade or an exposure change scales the light of every pixel: in CIELAB that scales
        ``L + 16`` and ``ab`` by one factor (the cube root of the change; ``L`` and ``ab`` alike
        in the dark, where CIELAB is linear: :func:`_light`). The frame-wide factor (the median
        ``gain``) is taken out before the frames are compared, so a fade is neither a mismatch
        nor a cut; the carried colours are scaled by each pixel's own factor, so that they fade
        with the frame instead of lagging behind it at their old strength.
        """
        cv2, s = self._cv2, self.settings
        prev_L, prev_ab = self._previous
        # for the flow: the previous frame at this frame's exposure (from the means), and dark
        # frames stretched so that the flow has contrast to follow
        rough = (float(L.mean()) + 16.0) / (float(prev_L.mean()) + 16.0)
        stretch = min(MAX_STRETCH, max(1.0, 50.0 / max(float(np.percentile(L, 99)), 1e-3)))
        gray8, prev_gray8 = _gray8(L * stretch), _gray8(((prev_L + 16.0) * rough - 16.0) * stretch)
        backward = self._flow.calc(gray8, prev_gray8, None)  # this frame -> previous
        forward = self._flow.calc(prev_gray8, gray8, None)  # previous -> this frame
        height, width = L.shape
        grid_x, grid_y = np.meshgrid(
            np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
        )
        map_x, map_y = grid_x + backward[..., 0], grid_y + backward[..., 1]

        def warp(image: np.ndarray) -> np.ndarray:
            return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

        inside = (map_x >= 0) & (map_x <= width - 1) & (map_y >= 0) & (map_y <= height - 1)
        light, warped_light = _light(L), _light(warp(prev_L))
        ratio = np.clip(light / np.maximum(warped_light, 1e-3), *GAIN_RANGE)
        gain = float(np.median(ratio[inside])) if inside.any() else 1.0
        # darker: the carried colours fade with the frame; brighter: they are never amplified
        # (colours predicted in the dark are the least sure), and trusted less, the more so
        # the more the light grows, so that a fade from black follows the new predictions
        warped_ab = np.stack([warp(channel) for channel in prev_ab]) * np.minimum(ratio, 1.0)
        brightening = math.exp(-0.5 * (max(0.0, math.log(gain)) / BRIGHTENING_SIGMA) ** 2)
        lightness_error = light - gain * warped_light  # only the frame-wide change taken out
        round_trip = backward + warp(forward)
        disagreement = np.square(round_trip).sum(axis=-1)
        error2, flow_term = np.square(lightness_error), 0.5 * disagreement / s.consistency_sigma**2
        inside = inside.astype(np.float32)

        def trust(sigma: float) -> np.ndarray:
            return np.exp(-0.5 * error2 / sigma**2 - flow_term) * inside

        continuity = float(trust(s.cut_lightness_sigma).mean())
        confidence = (trust(s.lightness_sigma) * brightening).astype(np.float32)
        return warped_ab, confidence, continuity


#: the most that dark frames are stretched for the flow, and the exposure change from one frame
#: to the next that is taken for a fade (beyond it, the frames simply do not match)
MAX_STRETCH = 8.0
GAIN_RANGE = (0.5, 2.0)
#: how fast trust in the carried colours falls as the frame brightens: exp(-1/2) at 5 % more
#: ``L + 16`` than the frame before (a fade from black gains far more; a still shot, none)
BRIGHTENING_SIGMA = math.log(1.02)


#: a frame whose brightest pixels (99th percentile) are darker than this CIELAB L is nearly
#: black: too dark to compare with another (a fade's last or first frames)
DARK_LIGHTNESS = 8.0


def _too_dark(L: np.ndarray) -> bool:
    return float(np.percentile(L, 99)) < DARK_LIGHTNESS


def _light(L: np.ndarray) -> np.ndarray:
    """What scales with ab when a pixel's light is scaled: ``L + 16`` where CIELAB takes the
    cube root (L >= 8), ``L`` itself below, where it is linear (joined continuously)."""
    return np.where(L >= 8.0, L + 16.0, 3.0 * L).astype(np.float32)


def _gray8(L: np.ndarray) -> np.ndarray:
    """CIELAB L 0..100 -> 8 bits, what the flow reads."""
    return np.clip(L * 2.55 + 0.5, 0, 255).astype(np.uint8)


# --- colourising frames ---------------------------------------------------------------------------
@dataclass
class ColorizedFrame:
    rgb: np.ndarray  # (H, W, 3) uint8 at the input's size
    starts_shot: bool  # first frame of the clip or of a shot after a detected cut
    predicted_rgb: np.ndarray | None = None  # the per-frame result, when asked for


def analysis_shape(height: int, width: int, side: int) -> tuple[int, int]:
    scale = min(1.0, side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def _lightness(rgb: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, 3)`` -> CIELAB L ``(1, 1, H, W)`` float32."""
    tensor = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).to(torch.float32) / 255.0
    return rgb_to_luminance(tensor)


def _shrink(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(shape):
        return x
    return F.interpolate(x, size=shape, mode="bilinear", align_corners=False, antialias=True)


def _recombine(L_full: torch.Tensor, ab_small: np.ndarray, rotation_steps: int) -> np.ndarray:
    """Analysis-size ab (upright) + the frame's own full-resolution L -> uint8 RGB."""
    ab = torch.from_numpy(np.ascontiguousarray(ab_small)).unsqueeze(0)
    if rotation_steps:
        ab = torch.rot90(ab, -rotation_steps, dims=(-2, -1))
    ab = F.interpolate(ab, size=L_full.shape[-2:], mode="bilinear", align_corners=False)
    return recombine(L_full, ab)


def _batches(frames: Iterable[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    batch: list[np.ndarray] = []
    for frame in frames:
        batch.append(frame)
        limit = max(1, min(size, BATCH_PIXEL_BUDGET // (frame.shape[0] * frame.shape[1])))
        if len(batch) >= limit:
            yield batch
            batch = []
    if batch:
        yield batch


def video_conditions(pipe, conditions: dict[str, Any] | None) -> dict[str, Any]:
    """The model's conditions for every frame: checked once, a reference decoded once."""
    conditions = {k: v for k, v in (conditions or {}).items() if v is not None}
    pipe.model.check_conditions(conditions)
    if conditions.get("reference") is not None:
        reference = reference_tensor(conditions["reference"], pipe.max_pixels)
        conditions["reference"] = reference.to(pipe.device)
    return conditions


def colorize_frames(
    frames: Iterable[np.ndarray],
    pipe,
    conditions: dict[str, Any] | None = None,
    *,
    stabilize: bool = True,
    settings: StabilizerSettings = DEFAULT_STABILIZER,
    rotation: int = 0,
    keep_prediction: bool = False,
) -> Iterator[ColorizedFrame]:
    """Colourise uint8 RGB frames in order, streamed (a few frames in memory at a time).

    The model sees each frame's L upright (``rotation``: the clip's display rotation, degrees
    counter-clockwise) at the pipeline's working size; ab is stabilised at the analysis size and
    recombined with the frame's full-resolution L. ``keep_prediction`` also returns the per-frame
    result, from the same prediction (for measuring what stabilisation changes).
    """
    conditions = video_conditions(pipe, conditions)
    stabilizer = Stabilizer(settings)
    steps = (round(rotation / 90) % 4) if rotation else 0
    first = True
    for batch in _batches(frames, pipe.batch_size):
        L_full = [_lightness(rgb) for rgb in batch]
        shape = analysis_shape(*batch[0].shape[:2], settings.analysis_side)
        L_small = torch.cat([_shrink(L, shape) for L in L_full])
        if steps:
            L_small = torch.rot90(L_small, steps, dims=(-2, -1))
        ab_small = pipe.predict_ab(L_small, **conditions).numpy()
        for i, L in enumerate(L_full):
            predicted = ab_small[i]
            if stabilize:
                ab, starts_shot = stabilizer(L_small[i, 0].numpy(), predicted)
            else:
                ab, starts_shot = predicted, first
            first = False
            yield ColorizedFrame(
                rgb=_recombine(L, ab, steps),
                starts_shot=starts_shot,
                predicted_rgb=_recombine(L, predicted, steps) if keep_prediction else None,
            )


# --- reading clips --------------------------------------------------------------------------------
@dataclass
class ClipInfo:
    """What a clip is, read before any colourising (frames are counted, not guessed)."""

    source: Path
    width: int
    height: int
    frames: int
    rate: Fraction  # average frames per second
    time_base: Fraction
    rotation: int = 0  # display rotation, degrees counter-clockwise
    variable_rate: bool = False
    rate_range: tuple[float, float] = (0.0, 0.0)
    audio: tuple[str, ...] = ()  # codec of each audio stream
    is_folder: bool = False
    frame_files: tuple[Path, ...] = ()

    @property
    def seconds(self) -> float:
        return self.frames / float(self.rate) if self.rate else 0.0


_NUMBERED = re.compile(r"^(.*?)(\d+)$")


def is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def _frame_files(folder: Path) -> list[Path]:
    images = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    numbered = [(m.group(1), int(m.group(2)), p) for p in images if (m := _NUMBERED.match(p.stem))]
    if not numbered or len(numbered) != len(images):
        raise InvalidVideo(
            f"{folder.name}: a folder of frames needs images named with a frame number "
            "(frame_0001.png, frame_0002.png, ...)"
        )
    return [p for _, _, p in sorted(numbered, key=lambda t: (t[0], t[1]))]


def probe_clip(path: str | os.PathLike, frames_fps: float | None = None) -> ClipInfo:
    """Open ``path`` (a video file, or a folder of numbered frames at ``frames_fps``)."""
    path = Path(path)
    if path.is_dir():
        return _probe_folder(path, frames_fps or 25.0)
    if not path.is_file():
        raise InvalidVideo(f"{path.name}: no such file or folder")
    import av

    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise InvalidVideo(f"{path.name}: not a readable video file ({_reason(exc)})") from None
    with container:
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["nothing"]
            raise InvalidVideo(
                f"{path.name}: no video stream (the file holds {' and '.join(kinds)} only)"
            )
        stream = container.streams.video[0]
        stamps, data_end = [], 0.0
        try:
            for packet in container.demux(stream, *container.streams.audio):
                if packet.size and packet.pts is not None and packet.time_base:
                    end = (packet.pts + (packet.duration or 0)) * float(packet.time_base)
                    data_end = max(data_end, end)
                if packet.size and packet.stream.type == "video":
                    stamps.append(packet.pts)
        except av.FFmpegError as exc:
            raise InvalidVideo(f"{path.name}: damaged ({_reason(exc)})") from None
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        start = float(container.start_time or 0) / 1e6
        declared = float(container.duration or 0) / 1e6  # microseconds; 0 when not stored
        if declared and data_end - start < declared - max(2 / float(rate), 0.02 * declared):
            raise InvalidVideo(
                f"{path.name}: the file is truncated: its data stops at "
                f"{max(data_end - start, 0):.2f} s of the {declared:.2f} s its header declares"
            )
        if not stamps or stream.width <= 0 or stream.height <= 0:
            raise InvalidVideo(f"{path.name}: the video stream holds no frames")
        variable, low, high = _rate_spread(stamps, stream.time_base)
        return ClipInfo(
            source=path,
            width=stream.width,
            height=stream.height,
            frames=len(stamps),
            rate=Fraction(rate),
            time_base=Fraction(stream.time_base),
            variable_rate=variable,
            rate_range=(low, high),
            audio=tuple(s.codec_context.name for s in container.streams.audio),
        )


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(": '")[0].strip() or type(exc).__name__


def _rate_spread(stamps: list, time_base) -> tuple[bool, float, float]:
    known = sorted(p for p in stamps if p is not None)
    steps = [b - a for a, b in zip(known, known[1:], strict=False) if b > a]
    if len(steps) < 2 or not time_base:
        return False, 0.0, 0.0
    shortest, longest = min(steps) * float(time_base), max(steps) * float(time_base)
    # Containers round timestamps (Matroska to 1 ms): only a real spread counts as variable.
    return longest > 1.25 * shortest + 0.0015, 1 / longest, 1 / shortest


def _probe_folder(folder: Path, fps: float) -> ClipInfo:
    if not (math.isfinite(fps) and fps > 0):
        raise InvalidVideo(f"frame rate must be a positive number, got {fps}")
    files = _frame_files(folder)
    first = load_image(files[0], keep_alpha=False)
    height, width = first.rgb.shape[:2]
    rate = Fraction(fps).limit_denominator(1001)
    return ClipInfo(
        source=folder,
        width=width,
        height=height,
        frames=len(files),
        rate=rate,
        time_base=1 / rate,
        is_folder=True,
        frame_files=tuple(files),
    )


class ClipReader:
    """Decodes a clip's frames in order; its audio packets go to ``on_audio`` as they come."""

    def __init__(self, info: ClipInfo) -> None:
        self.info = info
        self._container = None
        self.audio_streams: list = []
        if not info.is_folder:
            import av

            self._container = av.open(str(info.source))
            self.audio_streams = list(self._container.streams.audio)

    def __enter__(self) -> ClipReader:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def frames(
        self, on_audio: Callable[[Any], None] | None = None
    ) -> Iterator[tuple[np.ndarray, int]]:
        """``(rgb uint8 (H, W, 3), pts)`` per frame; the first one sets ``info.rotation``."""
        if self._container is None:
            yield from _read_folder(self.info)
            return
        import av

        info, container = self.info, self._container
        video = container.streams.video[0]
        audio = self.audio_streams if on_audio is not None else []
        step = max(1, round(1 / (float(info.rate) * float(info.time_base))))
        count, last_pts = 0, None
        try:
            for packet in container.demux(video, *audio):
                if packet.stream.type == "audio":
                    if packet.size:
                        on_audio(packet)
                    continue
                for frame in packet.decode():
                    pts = frame.pts if frame.pts is not None else (last_pts or -step) + step
                    last_pts = pts
                    count += 1
                    if count == 1:
                        info.rotation = int(getattr(frame, "rotation", 0) or 0) % 360
                    yield _frame_array(frame, info), pts
        except av.FFmpegError as exc:
            raise InvalidVideo(
                f"{info.source.name}: damaged or truncated at frame {count + 1} of "
                f"{info.frames} ({_reason(exc)})"
            ) from None
        if count < info.frames:
            raise InvalidVideo(
                f"{info.source.name}: only {count} of its {info.frames} frames could be decoded; "
                "the file is damaged or truncated"
            )


def _frame_array(frame, info: ClipInfo) -> np.ndarray:
    if (frame.width, frame.height) != (info.width, info.height):
        raise InvalidVideo(
            f"{info.source.name}: the frame size changes mid-clip ({info.width}x{info.height} "
            f"to {frame.width}x{frame.height}); split the clip where it changes"
        )
    return frame.to_ndarray(format="rgb24")


def _read_folder(info: ClipInfo) -> Iterator[tuple[np.ndarray, int]]:
    for index, path in enumerate(info.frame_files):
        image = load_image(path, keep_alpha=False)
        if image.rgb.shape[:2] != (info.height, info.width):
            height, width = image.rgb.shape[:2]
            raise InvalidVideo(
                f"{path.name} is {width}x{height} but the first frame is "
                f"{info.width}x{info.height}; every frame of a clip must have one size"
            )
        yield to_uint8(image.rgb), index


# --- writing clips --------------------------------------------------------------------------------
def output_path(out_dir: Path, source: Path, output_format: str, suffix: str = "") -> Path:
    """Where a clip's colour version goes: ``OUTDIR/<name><suffix>.mp4`` (``.mkv``, or a folder)."""
    stem = source.stem if source.is_file() else source.name
    extension = {"mp4": ".mp4", "lossless": ".mkv", "png": ""}[output_format]
    return out_dir / f"{stem}{suffix}{extension}"


class _Writer:
    """Encodes frames (keeping their timestamps) and copies audio packets, into ``path``."""

    def __init__(self, path: Path, info: ClipInfo, output_format: str) -> None:
        import av

        self.path, self.info, self.format = path, info, output_format
        self.notes: list[str] = []
        self.frames = 0
        self._audio: dict[int, Any] = {}
        self._container = None
        self._video = None
        if output_format == "png":
            path.mkdir()
            if info.audio:
                self.notes.append("PNG frames carry no audio: the clip's audio was not copied")
        else:
            container_format = "mp4" if output_format == "mp4" else "matroska"
            if path.suffix == ".mkv":
                container_format = "matroska"
            self._container = av.open(str(path), "w", format=container_format)

    @property
    def keeps_audio(self) -> bool:
        return self._container is not None and bool(self.info.audio)

    def start(self, source_audio: Iterable[Any] = ()) -> None:
        """Add the video stream (and a copy of each audio stream) once the rotation is known."""
        if self._container is None:
            return
        info, container = self.info, self._container
        if self.format == "mp4":
            stream = container.add_stream("libx264", rate=info.rate)
            odd = info.width % 2 or info.height % 2
            stream.pix_fmt = "yuv444p" if odd else "yuv420p"
            stream.options = {"crf": "18", "preset": "fast"}
            if odd:
                self.notes.append(
                    f"odd size {info.width}x{info.height}: H.264 in 4:2:0 needs even sides, so "
                    "the video is written in 4:4:4 (some browsers and phones do not play it; "
                    "--video-format lossless or png avoid this)"
                )
        else:
            stream = container.add_stream("ffv1", rate=info.rate)
            stream.pix_fmt = "bgr0"
        stream.width, stream.height = info.width, info.height
        stream.time_base = info.time_base
        stream.codec_context.time_base = info.time_base
        if info.rotation:
            stream.set_display_rotation(info.rotation)
        self._video = stream
        for source in source_audio:
            self._audio[source.index] = container.add_stream_from_template(source)

    def write(self, rgb: np.ndarray, pts: int) -> None:
        self.frames += 1
        if self._container is None:
            from PIL import Image

            Image.fromarray(rgb).save(self.path / f"frame_{self.frames:06d}.png")
            return
        import av

        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = pts, self.info.time_base
        for packet in self._video.encode(frame):
            self._container.mux(packet)

    def copy_audio(self, packets: list) -> None:
        """Mux (and forget) the audio packets demuxed so far."""
        for packet in packets:
            target = self._audio.get(packet.stream.index)
            if target is not None:
                packet.stream = target
                self._container.mux(packet)
        packets.clear()

    def close(self) -> None:
        if self._container is None:
            return
        if self._video is not None and self.frames:
            for packet in self._video.encode():
                self._container.mux(packet)
        self._container.close()
        self._container = None

    def abort(self) -> None:
        """Close without finishing and remove what was written."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001 - the original error is the one to report
                pass
            self._container = None
        if self.path.is_dir():
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            self.path.unlink(missing_ok=True)


def _mp4_holds(audio: tuple[str, ...]) -> bool:
    import av

    probe = av.open(os.devnull, "w", format="mp4")
    try:
        return all(codec in probe.supported_codecs for codec in audio)
    finally:
        probe.close()


@dataclass
class VideoResult:
    path: Path
    frames: int
    seconds: float
    shots: int  # 1 + the number of cuts detected
    notes: list[str] = field(default_factory=list)
    info: ClipInfo | None = None


def colorize_video(
    source: str | os.PathLike,
    target: str | os.PathLike,
    pipe,
    *,
    conditions: dict[str, Any] | None = None,
    stabilize: bool = True,
    settings: StabilizerSettings = DEFAULT_STABILIZER,
    output_format: str = "mp4",
    frames_fps: float | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> VideoResult:
    """Colourise the clip ``source`` into ``target`` (a file, or a folder for ``png``).

    Nothing appears at ``target`` until every frame is in: the work goes to
    ``<name>.incomplete-<id><ext>`` beside it, renamed at the end and removed on any error or
    interruption (a run killed outright leaves that clearly named file behind, never ``target``).
    ``progress(done, total)`` is called after each frame. If the audio does not fit MP4, the
    output is Matroska (``.mkv``) instead, and a note says so.
    """
    if output_format not in OUTPUT_FORMATS:
        raise DeepColorError(
            f"unknown video format {output_format!r}; choose from {', '.join(OUTPUT_FORMATS)}"
        )
    started = time.perf_counter()
    info = probe_clip(source, frames_fps)
    target = Path(target)
    notes = _size_notes(info, settings)
    if output_format == "mp4" and info.audio and not _mp4_holds(info.audio):
        target = target.with_suffix(".mkv")
        notes.append(f"MP4 cannot hold the {', '.join(info.audio)} audio: written as {target.name}")
    if target.exists() and not overwrite:
        raise DeepColorError(f"{target} exists (use --overwrite to replace it)")
    if info.variable_rate:
        low, high = info.rate_range
        notes.append(
            f"variable frame rate ({low:.3g} to {high:.3g} frames per second): every frame keeps "
            "its own timestamp"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.stem}{INCOMPLETE}{uuid.uuid4().hex[:8]}{target.suffix}")
    shots = 0
    with ClipReader(info) as reader:
        writer = _Writer(partial, info, output_format)
        try:
            audio: list = []
            decoded = reader.frames(on_audio=audio.append if writer.keeps_audio else None)
            stamps: list[int] = []

            def pixels() -> Iterator[np.ndarray]:
                for rgb, pts in decoded:
                    stamps.append(pts)
                    yield rgb

            frames = pixels()
            first = next(frames)  # decodes the first frame: the rotation is known from here
            writer.start(reader.audio_streams if writer.keeps_audio else [])
            colored = colorize_frames(
                _chain(first, frames),
                pipe,
                conditions,
                stabilize=stabilize,
                settings=settings,
                rotation=info.rotation,
            )
            for index, frame in enumerate(colored):
                writer.write(frame.rgb, stamps[index])
                writer.copy_audio(audio)
                shots += frame.starts_shot
                if progress is not None:
                    progress(index + 1, info.frames)
            writer.copy_audio(audio)
            writer.close()
            _replace(partial, target)
        except BaseException:
            writer.abort()
            raise
    return VideoResult(
        path=target,
        frames=writer.frames,
        seconds=time.perf_counter() - started,
        shots=shots,
        notes=notes + writer.notes,
        info=info,
    )


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest


def _size_notes(info: ClipInfo, settings: StabilizerSettings) -> list[str]:
    if info.width * info.height <= LARGE_FRAME_PIXELS:
        return []
    height, width = analysis_shape(info.height, info.width, settings.analysis_side)
    return [
        f"{info.width}x{info.height} frames: colours are predicted from L at {width}x{height} "
        f"and recombined with each frame's full {info.width}x{info.height} L"
    ]


def _replace(partial: Path, target: Path) -> None:
    """Move the finished output into place (replacing an old one only when asked, checked before)."""
    if partial.is_dir():
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        partial.rename(target)
    else:
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(partial, target)


# --- finding clips --------------------------------------------------------------------------------
def split_clips(
    inputs: Iterable[str],
    frames_fps: float | None = None,
    *,
    recursive: bool = True,
    skip: str | os.PathLike | None = None,
) -> tuple[list[tuple[Path, Path]], list[str]]:
    """``(clips, the other inputs)``; each clip as ``(path, relative)``, where ``relative`` is the
    path below the input that found it, so outputs keep a folder's subfolders, as photos do.

    Clips are video files named, matched by a glob or found inside a folder (below it too,
    unless ``recursive`` is false; never below ``skip``, the output folder, nor unfinished
    outputs), and folders themselves when ``frames_fps`` says that folders are clips of
    numbered frames. A folder is also passed on with the other inputs, for its photos.
    """
    from glob import glob

    skipped = Path(skip).resolve() if skip is not None else None

    def wanted(path: Path, base: Path) -> bool:
        if INCOMPLETE in path.name or not path.is_file():
            return False
        if skipped is None or skipped == base.resolve():
            return True
        return not path.resolve().is_relative_to(skipped)

    clips: list[tuple[Path, Path]] = []
    others: list[str] = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if any(ch in text for ch in "*?["):
            matches = [Path(p) for p in sorted(glob(text, recursive=True))]
            videos = [p for p in matches if is_video_file(p)]
            if not videos:
                others.append(text)  # photos only: the photo path expands it as it always has
                continue
            clips.extend((p, Path(p.name)) for p in videos if wanted(p, p.parent))
            others.extend(str(p) for p in matches if p.is_file() and not is_video_file(p))
        elif path.is_dir() and frames_fps is not None:
            clips.append((path, Path(path.name)))
        elif path.is_dir():
            pattern = "**/*" if recursive else "*"
            clips.extend(
                (p, p.relative_to(path))
                for p in sorted(path.glob(pattern))
                if is_video_file(p) and wanted(p, path)
            )
            others.append(text)
        elif is_video_file(path):
            clips.append((path, Path(path.name)))
        else:
            others.append(text)
    return clips, others
