"""The app's Video tab: its handler (limits, results) and the tab in Debian's Chromium."""

from __future__ import annotations

import urllib.request

import pytest
from browser import open_app
from test_app_live import STEP_TIMEOUT, browser, live_app, page  # noqa: F401 (fixtures)
from test_video import _frames, write_clip

from deepcolor import ColorizationPipeline
from deepcolor.errors import InvalidCondition, InvalidVideo
from deepcolor.ui import AppSettings
from deepcolor.ui import video as video_ui
from deepcolor.video import probe_clip


class _Catalog:
    """The part of the app's model catalog the Video tab uses, with the tint baseline."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.settings = AppSettings.from_env()

    def default_model(self) -> str:
        return "tint"

    def available(self, automatic=None) -> list[str]:
        return ["tint"]

    def pipeline(self, name: str) -> ColorizationPipeline:
        self.asked.append(name)
        return ColorizationPipeline(name, device="cpu")


def test_clip_is_colourised_with_previews_and_summary(tmp_path):
    source = write_clip(tmp_path / "garden party.mp4", _frames(count=10), audio=True)
    catalog = _Catalog()
    steps = []
    value = {"video": {"path": str(source), "orig_name": "garden party.mp4"}, "subtitles": None}
    result = video_ui.colorize_clip(value, "", catalog, progress=lambda f, t: steps.append(t))
    assert catalog.asked == ["tint"]  # empty choice: the default model
    assert result.video.endswith("garden_party-colour.mp4")
    info = probe_clip(result.video)
    assert (info.frames, info.width, info.height, info.audio) == (10, 64, 48, ("aac",))
    assert len(result.previews) == video_ui.PREVIEW_FRAMES
    assert result.summary.startswith("10 frames at 25 fps, 64x48, 1 shot(s), ")
    assert "audio copied (aac)" in result.summary
    assert steps[-1] == "frame 10 of 10"


def test_long_or_large_clips_are_refused_with_advice(tmp_path, monkeypatch):
    source = write_clip(tmp_path / "film.mp4", _frames(count=8))
    monkeypatch.setenv("DEEPCOLOR_APP_MAX_VIDEO_FRAMES", "5")
    with pytest.raises(InvalidCondition) as info:
        video_ui.colorize_clip(str(source), "tint", _Catalog())
    assert str(info.value) == (
        "film.mp4 is 0.3 s long (8 frames); the app colourises clips of up to 20 s and 5 frames: "
        "cut it shorter, or colourise longer or larger clips with the command line: "
        "deepcolor colorize CLIP -o OUTDIR"
    )
    with pytest.raises(InvalidCondition, match="upload a video clip first"):
        video_ui.colorize_clip(None, "tint", _Catalog())
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("shopping list")
    with pytest.raises(InvalidVideo, match=r"^notes.mp4: not a readable video file"):
        video_ui.colorize_clip(str(not_video), "tint", _Catalog())


@pytest.mark.browser
def test_browser_video_tab_colourises_a_clip(live_app, page, tmp_path):  # noqa: F811
    source = write_clip(tmp_path / "picnic.mp4", _frames(count=12), audio=True)
    open_app(page, live_app, "Video", timeout=STEP_TIMEOUT)
    page.locator("#video-input input[type=file]").set_input_files(str(source))
    page.locator("#video-input video").wait_for(timeout=STEP_TIMEOUT)
    page.click("#video-run")
    page.wait_for_selector("#video-status >> text=12 frames at 25 fps", timeout=STEP_TIMEOUT * 3)
    assert "audio copied (aac)" in page.locator("#video-status").inner_text()
    page.locator("#video-preview img").first.wait_for(timeout=STEP_TIMEOUT)
    assert page.locator("#video-preview img").count() == video_ui.PREVIEW_FRAMES
    link = page.locator("#video-download a").first
    link.wait_for(timeout=STEP_TIMEOUT)
    listed = page.locator("#video-download").inner_text().replace("\n", "")
    assert "picnic-colour.mp4" in listed
    href = link.get_attribute("href")
    assert href.endswith("picnic-colour.mp4")
    download = tmp_path / "downloaded.mp4"
    with urllib.request.urlopen(href, timeout=30) as response:
        download.write_bytes(response.read())
    info = probe_clip(download)
    assert (info.frames, info.width, info.height, info.audio) == (12, 64, 48, ("aac",))

    # a damaged clip: one pop-up, the earlier results go, no "Error" badges on the outputs
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(source.read_bytes()[: source.stat().st_size // 3])
    page.locator("#video-input button[aria-label='Clear']").first.click()
    page.locator("#video-input input[type=file]").set_input_files(str(cut))
    page.click("#video-run")
    page.locator(".toast-body").first.wait_for(timeout=STEP_TIMEOUT)
    page.wait_for_function(
        "() => !document.querySelector('#video-status').innerText.includes('12 frames')",
        timeout=STEP_TIMEOUT,
    )
    page.wait_for_timeout(1000)  # a badge or a late result would show by now
    assert page.locator("#video-preview img").count() == 0
    badges = page.get_by_text("Error", exact=True).evaluate_all(
        "els => els.filter(e => !e.closest('.toast-body')).map(e => e.outerHTML)"
    )
    assert badges == []
    assert "Traceback" not in page.content()
