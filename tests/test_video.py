"""Video: streamed colourisation keeps frames, timing, size, rotation and audio; stabilisation
removes flicker without crossing cuts; every bad clip gets a clear message."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from deepcolor import ColorizationPipeline
from deepcolor.cli import main
from deepcolor.errors import DeepColorError, InvalidVideo
from deepcolor.models.base import Colorizer
from deepcolor.video import (
    INCOMPLETE,
    Stabilizer,
    StabilizerSettings,
    colorize_frames,
    colorize_video,
    probe_clip,
)


class _JitterModel(Colorizer):
    """Colours that follow L plus a random colour cast drawn anew for every frame: the flicker of a
    per-frame colouriser, exaggerated. Records the L sizes it is given."""

    name = "jitter"

    def __init__(self, working_size=16):
        super().__init__(working_size=working_size)
        self.seen: list[tuple[int, ...]] = []
        self.generator = torch.Generator().manual_seed(0)

    def forward(self, L):
        self.seen.append(tuple(L.shape))
        cast = torch.randn(L.shape[0], 2, 1, 1, generator=self.generator) * 8
        base = torch.cat([(L - 50) * 0.3, (50 - L) * 0.2], dim=1)
        return base + cast.to(L.dtype)


def _scene(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth colour texture larger than the frame (panned over by ``_pan``)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(30, 225, (height // 8 + 3, width // 8 + 6, 3)).astype(np.uint8)
    big = torch.from_numpy(small).permute(2, 0, 1)[None].float()
    big = torch.nn.functional.interpolate(big, size=(height + 24, width + 48), mode="bicubic")
    return big[0].permute(1, 2, 0).clamp(0, 255).byte().numpy()


def _pan(scene: np.ndarray, height: int, width: int, t: int) -> np.ndarray:
    return scene[8 : 8 + height, 2 * t : 2 * t + width].copy()


def _frames(height=48, width=64, count=12, cut_at=None) -> list[np.ndarray]:
    first, second = _scene(height, width, 1), _scene(height, width, 2)[::-1].copy()
    return [
        _pan(second if cut_at is not None and t >= cut_at else first, height, width, t % 20)
        for t in range(count)
    ]


def write_clip(
    path: Path,
    frames: list[np.ndarray],
    *,
    rate: int = 25,
    audio: bool = False,
    rotation: int = 0,
    durations_ms: list[int] | None = None,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
) -> Path:
    """A clip through PyAV: optional AAC audio, display rotation, per-frame durations (VFR);
    ``options``: the muxer's (``movflags``...)."""
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        if durations_ms:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        if audio:
            sound = container.add_stream("aac", rate=16000)
            sound.layout = "mono"
        pts = 0
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if durations_ms:
                frame.pts, frame.time_base = pts, Fraction(1, 1000)
                pts += durations_ms[i % len(durations_ms)]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio:
            samples = 16000 * len(frames) // rate
            wave = (0.1 * np.sin(np.arange(samples) / 7)).astype(np.float32)[None]
            for start in range(0, samples, 1024):
                chunk = av.AudioFrame.from_ndarray(
                    np.ascontiguousarray(wave[:, start : start + 1024]),
                    format="fltp",
                    layout="mono",
                )
                chunk.sample_rate = 16000
                for packet in sound.encode(chunk):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return path


def _decoded(path: Path) -> tuple[list[np.ndarray], list[float]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return (
            [f.to_ndarray(format="rgb24") for f in frames],
            [float(f.pts * stream.time_base) for f in frames],
        )


def _audio_packets(path: Path) -> list[tuple[bytes, int]]:
    with av.open(str(path)) as container:
        return [(bytes(p), p.pts) for p in container.demux(audio=0) if p.size]


@pytest.fixture
def pipe():
    return ColorizationPipeline(_JitterModel(), device="cpu", batch_size=4)


# --- output agrees with input -------------------------------------------------------------------
def test_output_keeps_frames_rate_size_rotation_and_audio(tmp_path, pipe):
    source = write_clip(tmp_path / "home movie.mp4", _frames(count=20), audio=True, rotation=90)
    result = colorize_video(source, tmp_path / "out" / "colour.mp4", pipe)
    before, after = probe_clip(source), probe_clip(result.path)
    assert result.path == tmp_path / "out" / "colour.mp4" and result.frames == 20
    assert (after.width, after.height, after.frames) == (before.width, before.height, 20)
    assert after.rate == before.rate == 25
    assert _decoded(result.path)[1] == _decoded(source)[1]  # every timestamp
    assert after.audio == ("aac",)
    assert _audio_packets(result.path) == _audio_packets(source)  # copied, not re-encoded
    with av.open(str(result.path)) as container:
        assert next(container.decode(video=0)).rotation == 90
    assert [p.name for p in result.path.parent.iterdir()] == ["colour.mp4"]
    # luminance is the input's (up to H.264 at CRF 18), colour was added
    from skimage.color import rgb2lab

    lab_in = rgb2lab(_decoded(source)[0][5])
    lab_out = rgb2lab(_decoded(result.path)[0][5])
    assert np.abs(lab_out[..., 0] - lab_in[..., 0]).mean() < 1.5
    assert np.hypot(lab_out[..., 1], lab_out[..., 2]).mean() > 3


def test_model_sees_the_frame_upright(tmp_path):
    spy = _JitterModel(working_size=None)
    spy.size_multiple = 1
    pipe = ColorizationPipeline(spy, device="cpu")
    source = write_clip(tmp_path / "phone.mp4", _frames(height=32, width=64, count=2), rotation=90)
    colorize_video(source, tmp_path / "out.mp4", pipe)
    assert spy.seen[0][-2:] == (64, 32)  # stored 64x32, shown (and coloured) as 32x64


def test_lossless_and_png_outputs(tmp_path, pipe):
    frames = _frames(count=6)
    source = write_clip(tmp_path / "clip.mkv", frames, codec="ffv1", pix_fmt="bgr0")
    pipe.model.generator.manual_seed(0)
    lossless = colorize_video(source, tmp_path / "a.mkv", pipe, output_format="lossless")
    pipe.model.generator.manual_seed(0)  # the same colour casts again
    png = colorize_video(source, tmp_path / "frames", pipe, output_format="png")
    decoded = _decoded(lossless.path)[0]
    names = sorted(p.name for p in png.path.iterdir())
    assert names == [f"frame_{i:06d}.png" for i in range(1, 7)]
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(png.path / names[3])), decoded[3])


def test_folder_of_numbered_frames_through_the_cli(tmp_path, capsys):
    from PIL import Image

    folder = tmp_path / "scan"
    folder.mkdir()
    for i, rgb in enumerate(_frames(count=5)):
        Image.fromarray(rgb).save(folder / f"frame_{i + 1:04d}.png")
    code = main(
        ["colorize", str(folder), "-o", str(tmp_path / "out"), "-m", "tint", "--frames-fps", "12"]
    )
    assert code == 0, capsys.readouterr().err
    info = probe_clip(tmp_path / "out" / "scan.mp4")
    assert (info.frames, info.rate, info.width, info.height) == (5, 12, 64, 48)


def test_cli_colorizes_a_clip_and_reports_a_bad_one(tmp_path, capsys):
    good = write_clip(tmp_path / "good.mov", _frames(count=4))
    bad = tmp_path / "bad.webm"
    bad.write_bytes(b"\x1a\x45\xdf\xa3 not really a webm")
    code = main(["colorize", str(good), str(bad), "-o", str(tmp_path / "out"), "-m", "tint"])
    captured = capsys.readouterr()
    assert code == 1
    assert (tmp_path / "out" / "good.mp4").is_file()
    assert "1 of 2 clip(s) failed" in captured.err
    assert f"{bad}: not a readable video file (" in captured.err
    assert "Traceback" not in captured.err


def test_cli_colorizes_a_clip_with_the_default_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DEEPCOLOR_DEFAULT_MODEL", "tint")
    clip = write_clip(tmp_path / "home.mov", _frames(count=3))
    assert main(["colorize", str(clip), "-o", str(tmp_path / "out")]) == 0
    assert probe_clip(tmp_path / "out" / "home.mp4").frames == 3
    assert "default model: tint" in capsys.readouterr().err


def test_cli_takes_clips_and_photos_in_one_run_with_one_model(tmp_path, monkeypatch, capsys):
    import deepcolor.cli as cli

    built = []
    real = cli._pipeline
    monkeypatch.setattr(cli, "_pipeline", lambda *a, **k: built.append(1) or real(*a, **k))
    clip = write_clip(tmp_path / "home.mov", _frames(count=3))
    photo = tmp_path / "still.png"
    Image.fromarray(_frames(count=1)[0]).save(photo)
    out = tmp_path / "out"
    assert main(["colorize", str(clip), str(photo), "-o", str(out), "--model", "tint"]) == 0
    assert probe_clip(out / "home.mp4").frames == 3 and (out / "still.png").is_file()
    assert len(built) == 1  # the model is loaded once for both
    assert "1 of 1 image(s) written" in capsys.readouterr().out


# --- stabilisation --------------------------------------------------------------------------------
def _flicker(frames: list[np.ndarray]) -> float:
    """Mean ab change between consecutive frames at fixed pixels (the test clips are static)."""
    from skimage.color import rgb2lab

    ab = [rgb2lab(f)[..., 1:] for f in frames]
    return float(np.mean([np.abs(b - a).mean() for a, b in zip(ab, ab[1:], strict=False)]))


def test_stabilisation_removes_flicker_and_restarts_at_a_cut(pipe):
    still, other = _frames(count=1)[0], _frames(count=1, cut_at=0)[0]
    frames = [still] * 10 + [other] * 10
    out = list(colorize_frames(frames, pipe, keep_prediction=True))
    stable, single = [f.rgb for f in out], [f.predicted_rgb for f in out]
    assert _flicker(stable[:10]) < 0.5 * _flicker(single[:10])
    assert _flicker(stable[10:]) < 0.5 * _flicker(single[10:])
    assert [i for i, f in enumerate(out) if f.starts_shot] == [0, 10]
    assert np.array_equal(stable[0], single[0]) and np.array_equal(stable[10], single[10])
    # nothing of the first shot's colour reaches the second: frame 10 is its own prediction,
    # and frame 11 moves toward frame 11's prediction, not back toward frame 9's colours
    assert not np.array_equal(stable[11], single[11])


def test_colour_follows_motion():
    """A coloured square moves 3 px a frame: the carried colour moves with it."""
    stabilizer = Stabilizer(StabilizerSettings(history=0.9))
    rng = np.random.default_rng(0)
    texture = rng.random((64, 96)).astype(np.float32) * 60 + 20
    texture = torch.nn.functional.avg_pool2d(torch.from_numpy(texture)[None, None], 3, 1, 1)[0, 0]
    texture = texture.numpy()
    red = np.zeros((2, 48, 64), np.float32)
    red[0, 16:32, 16:32] = 40  # frame 0 predicts red on a square

    def view(t):
        return np.ascontiguousarray(texture[8:56, 3 * t : 3 * t + 64])

    stabilizer(view(0), red)
    ab, starts = stabilizer(view(1), np.zeros_like(red))  # frame 1 predicts no colour at all
    assert not starts
    # the red square's carried colour is now 3 px to the left (the view moved right)
    assert ab[0, 18:30, 15:27].mean() > 25
    assert ab[0, 18:30, 29:31].mean() < ab[0, 18:30, 15:27].mean() / 2


def test_first_frame_after_a_cut_in_a_file_equals_per_frame(tmp_path, pipe):
    frames = _frames(count=16, cut_at=8)
    source = write_clip(tmp_path / "cut.mkv", frames, codec="ffv1", pix_fmt="bgr0")
    stable = colorize_video(source, tmp_path / "s.mkv", pipe, output_format="lossless")
    pipe.model.generator.manual_seed(0)
    single = colorize_video(
        source, tmp_path / "p.mkv", pipe, output_format="lossless", stabilize=False
    )
    assert stable.shots == 2 and single.shots == 1
    a, b = _decoded(stable.path)[0], _decoded(single.path)[0]
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[8], b[8])
    assert not np.array_equal(a[9], b[9])


# --- bad input ------------------------------------------------------------------------------------
def test_file_without_video_stream(tmp_path, pipe):
    path = tmp_path / "song.mp4"
    with av.open(str(path), "w") as container:
        sound = container.add_stream("aac", rate=16000)
        sound.layout = "mono"
        chunk = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        chunk.sample_rate = 16000
        for packet in [*sound.encode(chunk), *sound.encode()]:
            container.mux(packet)
    with pytest.raises(InvalidVideo) as info:
        colorize_video(path, tmp_path / "out.mp4", pipe)
    assert str(info.value) == "song.mp4: no video stream (the file holds audio only)"
    assert not (tmp_path / "out.mp4").exists()


def test_corrupt_file(tmp_path, pipe):
    path = tmp_path / "holiday.avi"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(InvalidVideo) as info:
        colorize_video(path, tmp_path / "out.mp4", pipe)
    assert str(info.value) == (
        "holiday.avi: not a readable video file (Invalid data found when processing input)"
    )


@pytest.mark.parametrize("name", ["clip.mp4", "clip.mkv"])
def test_truncated_file(tmp_path, pipe, name):
    # MP4 with its index first (as web videos are), so that the cut-off file still opens
    complete = write_clip(
        tmp_path / f"complete-{name}", _frames(count=20), options={"movflags": "faststart"}
    )
    data = complete.read_bytes()
    path = tmp_path / name
    path.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(InvalidVideo) as info:
        colorize_video(path, tmp_path / "out.mp4", pipe)
    message = str(info.value)
    assert message.startswith(f"{name}: the file is truncated: its data stops at ")
    assert message.endswith(" s of the 0.80 s its header declares") or message.endswith(
        " s of the 0.82 s its header declares"
    ), message
    assert list(tmp_path.glob("out*")) == []


def test_variable_frame_rate_keeps_every_timestamp(tmp_path, pipe):
    source = write_clip(tmp_path / "vfr.mp4", _frames(count=10), durations_ms=[100, 40])
    result = colorize_video(source, tmp_path / "out.mp4", pipe)
    assert result.notes == [
        "variable frame rate (10 to 25 frames per second): every frame keeps its own timestamp"
    ]
    assert _decoded(result.path)[1] == _decoded(source)[1]
    assert probe_clip(result.path).frames == 10


def test_odd_size_is_kept(tmp_path, pipe):
    frames = [f[:17, :33].copy() for f in _frames(count=4)]
    source = write_clip(tmp_path / "odd.mkv", frames, codec="ffv1", pix_fmt="bgr0")
    result = colorize_video(source, tmp_path / "odd.mp4", pipe)
    assert result.notes == [
        "odd size 33x17: H.264 in 4:2:0 needs even sides, so the video is written in 4:4:4 "
        "(some browsers and phones do not play it; --video-format lossless or png avoid this)"
    ]
    info = probe_clip(result.path)
    assert (info.width, info.height, info.frames) == (33, 17, 4)


@pytest.mark.slow
def test_4k_clip_is_coloured_small_and_kept_at_4k(tmp_path):
    spy = _JitterModel(working_size=16)
    pipe = ColorizationPipeline(spy, device="cpu")
    seen_by_pipeline = []
    predict_ab = pipe.predict_ab
    pipe.predict_ab = lambda L, **kw: seen_by_pipeline.append(tuple(L.shape)) or predict_ab(L, **kw)
    frame = np.kron(_frames(height=27, width=48, count=1)[0], np.ones((80, 80, 1), np.uint8))
    source = write_clip(tmp_path / "uhd.mp4", [frame, frame])
    result = colorize_video(source, tmp_path / "out.mp4", pipe)
    assert result.notes == [
        "3840x2160 frames: colours are predicted from L at 480x270 and recombined with each "
        "frame's full 3840x2160 L"
    ]
    assert seen_by_pipeline == [(2, 1, 270, 480)] and spy.seen == [(2, 1, 16, 16)]
    info = probe_clip(result.path)
    assert (info.width, info.height, info.frames) == (3840, 2160, 2)


def test_interrupted_run_leaves_nothing_under_the_output_name(tmp_path, pipe):
    source = write_clip(tmp_path / "long.mp4", _frames(count=12), audio=True)
    out = tmp_path / "out"
    out.mkdir()
    seen_while_running = []

    def stop_at_five(done: int, total: int) -> None:
        seen_while_running.append(sorted(p.name for p in out.iterdir()))
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        colorize_video(source, out / "long.mp4", pipe, progress=stop_at_five)
    assert list(out.iterdir()) == []  # the partial output was removed
    # while it ran, the only file was clearly named as incomplete, never long.mp4
    names = {name for listing in seen_while_running for name in listing}
    assert len(names) == 1 and INCOMPLETE in names.pop()


def test_existing_output_is_not_overwritten(tmp_path, pipe):
    source = write_clip(tmp_path / "a.mp4", _frames(count=2))
    (tmp_path / "out.mp4").write_bytes(b"keep me")
    with pytest.raises(DeepColorError, match="out.mp4 exists"):
        colorize_video(source, tmp_path / "out.mp4", pipe)
    assert (tmp_path / "out.mp4").read_bytes() == b"keep me"
    colorize_video(source, tmp_path / "out.mp4", pipe, overwrite=True)
    assert probe_clip(tmp_path / "out.mp4").frames == 2


def test_reference_models_take_the_reference_for_every_frame(tmp_path):
    pytest.importorskip("timm")
    from tiny_models import TINY_KWARGS

    from deepcolor import create_colorizer

    model = create_colorizer("exemplar", weights=None, **TINY_KWARGS["exemplar"])
    pipe = ColorizationPipeline(model, device="cpu")
    source = write_clip(tmp_path / "a.mp4", _frames(count=3))
    reference = torch.rand(3, 40, 40)
    result = colorize_video(source, tmp_path / "out.mp4", pipe, conditions={"reference": reference})
    assert result.frames == 3
    from deepcolor.errors import InvalidCondition

    with pytest.raises(InvalidCondition, match="needs reference"):
        colorize_video(source, tmp_path / "out2.mp4", pipe)


def test_globs_split_clips_from_photos(tmp_path):
    from deepcolor.video import split_clips

    for name in ("a.mp4", "b.MOV", f"c{INCOMPLETE}1234abcd.mp4", "d.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "e.avi").write_bytes(b"")
    clips, others = split_clips([str(tmp_path / "*"), str(tmp_path / "*.png"), "e.avi"])
    assert [clip for clip, _ in clips] == [tmp_path / n for n in ("a.mp4", "b.MOV", "e.avi")] + [
        Path("e.avi")
    ]
    # the photo of a mixed glob is named; a photos-only glob is passed on as it was
    assert others == [str(tmp_path / "d.png"), str(tmp_path / "*.png")]
    folder_clips, folder_others = split_clips([str(tmp_path)], frames_fps=24)
    assert folder_clips == [(tmp_path, Path(tmp_path.name))] and folder_others == []


def test_folders_of_clips_are_searched_like_folders_of_photos(tmp_path):
    from deepcolor.video import split_clips

    for name in ("a.mp4", "sub/b.mkv", f"sub/c{INCOMPLETE}1234abcd.mp4", "d.png", "out/e.mp4"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    clips, others = split_clips([str(tmp_path)], skip=tmp_path / "out")
    assert clips == [
        (tmp_path / "a.mp4", Path("a.mp4")),
        (tmp_path / "sub/b.mkv", Path("sub/b.mkv")),
    ]
    assert others == [str(tmp_path)]  # searched for photos too
    flat, _ = split_clips([str(tmp_path)], recursive=False, skip=tmp_path / "out")
    assert flat == [(tmp_path / "a.mp4", Path("a.mp4"))]


def test_a_fade_to_black_is_followed_and_never_taken_for_a_cut():
    """A model that predicts each frame's true colours: along a fade the stabilised colours fade
    with the frame (they do not lag at their old strength), and no frame is a cut, black ones
    included."""
    import cv2
    from skimage.color import rgb2lab

    from deepcolor.video import Stabilizer

    rng = np.random.default_rng(3)
    photo = cv2.resize(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), (64, 48))
    stabilizer, errors, cuts = Stabilizer(), [], []
    for t in range(24):
        k = min(1.0, (24 - t) / 16)  # 8 still frames, then 16 frames down to black
        rgb = np.clip(photo * k + 0.5, 0, 255).astype(np.uint8)
        lab = rgb2lab(rgb).astype(np.float32)
        truth = np.moveaxis(lab[..., 1:], -1, 0)
        ab, starts_shot = stabilizer(lab[..., 0], truth)
        errors.append(float(np.abs(ab - truth).mean()))
        cuts.append(starts_shot)
    assert cuts == [True] + [False] * 23
    assert max(errors) < 2.5, np.round(errors, 2)  # carried at full strength: up to 17
