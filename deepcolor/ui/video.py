"""Video tab: a short clip in, a colourised, temporally stabilised clip out (MP4, audio kept).

The app colourises short clips only (a shared server); longer ones are refused with a message
that points to the command line, which streams clips of any length.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidCondition
from ..video import ClipInfo, ClipReader, colorize_video, probe_clip
from .common import display_name, new_folder, path_of, save_png
from .settings import AppSettings

#: the longest clip the app takes (seconds, frames) and the largest frame; env overrides
MAX_FRAME_PIXELS = 1920 * 1088
PREVIEW_FRAMES = 4
CLI_ADVICE = (
    "colourise longer or larger clips with the command line: deepcolor colorize CLIP -o OUTDIR"
)


@dataclass
class VideoTabResult:
    video: str  # the colourised clip (MP4)
    previews: list[str] = field(default_factory=list)  # PNGs of its first frames
    summary: str = ""


def check_app_limits(info: ClipInfo, name: str, settings: AppSettings) -> None:
    """Refuse clips that are too long or too large for a shared server, saying what to do."""
    max_seconds, max_frames = settings.video_max_seconds, settings.video_max_frames
    if info.frames > max_frames or info.seconds > max_seconds:
        raise InvalidCondition(
            f"{name} is {info.seconds:.1f} s long ({info.frames} frames); the app colourises clips "
            f"of up to {max_seconds:g} s and {max_frames} frames: cut it shorter, or "
            f"{CLI_ADVICE}"
        )
    if info.width * info.height > MAX_FRAME_PIXELS:
        raise InvalidCondition(
            f"{name} is {info.width}x{info.height}; the app takes frames up to 1920x1080: "
            f"{CLI_ADVICE} (it keeps the full size)"
        )


def _preview_frames(path: Path, folder: Path, count: int = PREVIEW_FRAMES) -> list[str]:
    info = probe_clip(path)
    previews = []
    with ClipReader(info) as reader:
        for index, (rgb, _) in enumerate(reader.frames()):
            previews.append(save_png(rgb, folder, f"frame-{index + 1}"))
            if index + 1 == count:
                break
    return previews


def colorize_clip(
    value: Any,
    model_name: str | None,
    catalog,
    *,
    stabilize: bool = True,
    progress: Callable[[float, str], None] | None = None,
) -> VideoTabResult:
    """The uploaded clip colourised with ``model_name`` (the app's default when empty)."""
    if isinstance(value, dict) and "video" in value:  # gr.Video's payload: video + subtitles
        value = value["video"]
    path = path_of(value)
    if not path:
        raise InvalidCondition("upload a video clip first")
    name = display_name(value)
    info = probe_clip(path)
    check_app_limits(info, name, catalog.settings)
    pipe = catalog.pipeline(model_name or catalog.default_model())
    folder = new_folder("video")
    stem = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in Path(name).stem)[:60]

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress(done / max(total, 1), f"frame {done} of {total}")

    result = colorize_video(
        path,
        folder / f"{stem or 'clip'}-colour.mp4",
        pipe,
        stabilize=stabilize,
        progress=report,
    )
    summary = (
        f"{result.frames} frames at {float(info.rate):.3g} fps, {info.width}x{info.height}, "
        f"{result.shots} shot(s), {result.seconds:.1f} s with `{pipe.model.name}`"
        + ("" if stabilize else " (each frame on its own, not stabilised)")
        + (f"; audio copied ({', '.join(info.audio)})" if info.audio else "")
        + "."
    )
    summary += "".join(f"\n\nNote: {note}" for note in result.notes)
    return VideoTabResult(str(result.path), _preview_frames(result.path, folder), summary)


def video_tab(catalog, handler: Callable, clear_on_failure: Callable) -> None:
    """The tab's layout and events (``handler`` wraps an action: readable errors, GPU lease;
    ``clear_on_failure`` empties the outputs after a failed run, as on every tab)."""
    import gradio as gr

    automatic = catalog.available(automatic=True)
    limits = catalog.settings
    gr.Markdown(
        f"Colourise a short clip (up to {limits.video_max_seconds:g} s, "
        f"{limits.video_max_frames} frames, 1920x1080): "
        "every frame is colourised, then the colours are stabilised along the motion so they "
        "do not flicker; scene cuts start afresh. Frame count, rate, size and audio are kept. "
        "Longer clips: `deepcolor colorize clip.mp4 -o out/`."
    )
    with gr.Row():
        with gr.Column():
            clip = gr.Video(label="Clip", sources=["upload"], elem_id="video-input", height=280)
            model = gr.Dropdown(
                automatic, value=catalog.default_model(), label="Model", elem_id="video-model"
            )
            stabilize = gr.Checkbox(
                value=True, label="Stabilise colours over time", elem_id="video-stabilize"
            )
            run = gr.Button("Colourise clip", variant="primary", elem_id="video-run")
        with gr.Column():
            status = gr.Markdown(label="Summary", elem_id="video-status")
            previews = gr.Gallery(
                label="First frames", columns=4, height=200, elem_id="video-preview"
            )
            output = gr.Video(label="Colourised clip", elem_id="video-output", height=280)
            download = gr.File(label="Download (MP4)", elem_id="video-download")

    @handler(gpu_seconds=120)
    def colorize(value, model_name, keep_steady, progress=gr.Progress()):  # noqa: B008
        result = colorize_clip(
            value,
            model_name,
            catalog,
            stabilize=bool(keep_steady),
            progress=lambda fraction, text: progress(fraction, desc=text),
        )
        return result.summary, result.previews, result.video, result.video

    outputs = [status, previews, output, download]
    clear_on_failure(
        run.click(colorize, [clip, model, stabilize], outputs, preprocess=False, api_name="video"),
        outputs,
    )
