"""The running app: its API through gradio_client, and its pages in Debian's Chromium.

The real ``python app.py --port N`` is started once for the module. The tests write nothing into
the repository; ``python bench/screenshots.py`` takes the pictures of the app on purpose.
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from browser import chromium, open_app
from PIL import Image
from playwright.sync_api import expect
from skimage.color import rgb2lab

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "deepcolor" / "examples" / "kodim23-parrots.jpg"
START_TIMEOUT = 150  # seconds; a cold start is ~10 s on an idle machine, more on a busy one
STEP_TIMEOUT = 60_000  # ms for one UI round trip

# Gradio's own Dataframe code (in the in-process server) trips pandas 3 deprecations.
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*no_silent_downcasting.*"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_served(url: str, process: subprocess.Popen | None, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            pytest.fail(f"app.py exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"app.py did not serve {url} within {START_TIMEOUT} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def live_app(tmp_path_factory):
    """``python app.py --port N`` on 127.0.0.1, run from the project root as a visitor would."""
    tmp = tmp_path_factory.mktemp("live-app")
    port = _free_port()
    log = tmp / "app.log"
    env = {
        **os.environ,
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(tmp / "gradio"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    leftovers = {".gradio", "flagged", "gradio_cached_examples"}
    before = {p for p in leftovers if (ROOT / p).exists()}
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_served(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    after = {p for p in leftovers if (ROOT / p).exists()}
    assert after == before, f"the app left {after - before} in the working folder"


# --- API ----------------------------------------------------------------------------------------
def test_api_colorizes_at_full_size_keeping_luminance(live_app, tmp_path):
    from gradio_client import Client, handle_file

    client = Client(live_app, verbose=False, download_files=str(tmp_path))
    # "": the app's default model (unet when its weights load, else a learned model, else tint)
    path = client.predict(handle_file(str(PHOTO)), "", api_name="/colorize")
    original = np.asarray(Image.open(PHOTO).convert("RGB"))
    out = np.asarray(Image.open(path).convert("RGB"))
    assert out.shape == original.shape
    L_in, lab_out = rgb2lab(original)[..., 0], rgb2lab(out)
    # The luminance is the input's: off by uint8 rounding, and by gamut clipping on a few
    # vivid pixels (so the mean, not the maximum, is held within 1).
    delta_L = np.abs(lab_out[..., 0] - L_in)
    assert delta_L.mean() < 1.0 and np.median(delta_L) < 0.5
    chroma = np.hypot(lab_out[..., 1], lab_out[..., 2])  # a gray result has about 0.01
    assert chroma.mean() > 1.0, "the default model added no colour"


def test_api_reports_bad_files_as_messages(live_app, tmp_path):
    from gradio_client import Client, handle_file

    bad = tmp_path / "scan.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    client = Client(live_app, verbose=False, download_files=str(tmp_path))
    with pytest.raises(Exception, match="scan.png") as info:
        client.predict(handle_file(str(bad)), "tint", api_name="/colorize")
    assert "Traceback" not in str(info.value)


# --- browser ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield context.new_page()
    context.close()


def _open(page, url: str, tab: str | None = None) -> None:
    open_app(page, url, tab, timeout=STEP_TIMEOUT)


def _upload(page, component: str, path: Path) -> None:
    """Sets a file on a Gradio upload component and waits until it lists the file's name.

    A file set while a freshly shown tab is still mounting can be dropped by the page (seen once
    in CI, never locally), so a second try follows a silent first one; a real upload failure
    still fails the wait.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    page.locator(component).wait_for(state="visible", timeout=STEP_TIMEOUT)
    listed = page.locator(f"{component} >> text={path.name}").first
    for attempt in range(2):
        page.locator(f"{component} input[type=file]").set_input_files(str(path))
        try:
            listed.wait_for(timeout=STEP_TIMEOUT // 2)
            return
        except PlaywrightTimeoutError:
            if attempt:
                raise


def _run_compare(page, models: int) -> None:
    page.click("#compare-run")
    page.wait_for_selector(f"#compare-status >> text={models} result(s)", timeout=STEP_TIMEOUT)


@pytest.mark.browser
def test_browser_compare_explains_models_and_shows_results_and_metrics(live_app, page):
    from deepcolor.ui import ModelCatalog

    _open(page, live_app)
    page.locator("#compare-input input[type=file]").set_input_files(str(PHOTO))
    page.wait_for_selector("#compare-info >> text=384x256", timeout=STEP_TIMEOUT)
    checked = page.locator("#compare-models label:has(input:checked)").all_inner_texts()
    default = ModelCatalog().default_model()
    assert [name.strip() for name in checked] == [default]  # the default model alone
    about = page.locator("#compare-about").inner_text()
    for name in page.locator("#compare-models label").all_inner_texts():
        assert f"{name.strip()}:" in about  # one line per model says what it is
    page.locator("#compare-models label", has_text=re.compile(r"^\s*tint\s*$")).click()
    assert "Colour strength" in page.locator("#compare-strength").inner_text()
    _run_compare(page, 2)
    sliders = page.locator(".result-slider:visible")
    assert sliders.count() == 2
    labels = " ".join(sliders.all_inner_texts())
    table = page.locator("#compare-metrics").inner_text()
    for name in (default, "tint"):
        assert f"{name} - " in labels  # each result is labelled with its model and time
        assert name in table
    assert "PSNR" in table and "CIEDE2000" in table and "original (ground truth)" in table


@pytest.mark.browser
def test_browser_an_error_says_it_once_and_clears_the_earlier_result(live_app, page, tmp_path):
    corrupt = tmp_path / "grandma.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 this JPEG was cut off")
    _open(page, live_app)
    page.locator("#compare-input input[type=file]").set_input_files(str(PHOTO))
    page.wait_for_selector("#compare-info >> text=384x256", timeout=STEP_TIMEOUT)
    _run_compare(page, 1)
    assert page.locator(".result-slider:visible").count() == 1
    page.locator("#compare-input input[type=file]").set_input_files(str(corrupt))
    info = page.locator("#compare-info")
    expect(info).to_contain_text(re.compile(r"grandma\.jpg: .*damaged"), timeout=STEP_TIMEOUT)
    assert page.locator(".toast-body").count() == 0  # said in place, not as a pop-up
    page.click("#compare-run")
    toast = page.locator(".toast-body")
    toast.first.wait_for(timeout=STEP_TIMEOUT)
    page.wait_for_function(
        "() => !document.querySelector('#compare-status').innerText.includes('result(s)')",
        timeout=STEP_TIMEOUT,
    )
    page.wait_for_timeout(1000)  # a second pop-up or a late result would show by now
    assert toast.count() == 1 and "grandma.jpg" in toast.inner_text()
    assert page.locator(".result-slider:visible").count() == 0  # the parrots' result is gone
    badges = page.get_by_text("Error", exact=True).evaluate_all(
        "els => els.filter(e => !e.closest('.toast-body')).map(e => e.outerHTML)"
    )
    assert badges == []  # no red "Error" badges on the outputs
    assert "Traceback" not in page.content()


@pytest.mark.browser
def test_browser_a_one_pixel_image_is_too_small(live_app, page, tmp_path):
    tiny = tmp_path / "pixel.png"
    Image.new("RGB", (1, 1), (120, 80, 40)).save(tiny)
    _open(page, live_app)
    page.locator("#compare-input input[type=file]").set_input_files(str(tiny))
    expect(page.locator("#compare-info")).to_contain_text(
        "too small to colourise", timeout=STEP_TIMEOUT
    )
    page.click("#compare-run")
    page.locator(".toast-body", has_text="too small").wait_for(timeout=STEP_TIMEOUT)
    page.wait_for_timeout(1000)
    assert "result(s)" not in page.locator("#compare-status").inner_text()


class _HintMean:
    """Factory for a tiny hint-taking model, used only when no real one has weights here."""

    @staticmethod
    def build():
        from deepcolor.models.base import Colorizer

        class HintMean(Colorizer):
            """Paints every pixel with the mean colour of the hints (test model)."""

            name = "hintmean"
            accepts = ("hints",)

            def __init__(self) -> None:
                super().__init__(working_size=64)

            def forward(self, L, hints=None):
                ab = torch.zeros(L.shape[0], 2, *L.shape[-2:], dtype=L.dtype, device=L.device)
                if hints is None:
                    return ab
                hint_ab, mask = hints
                mean = (hint_ab * mask).sum(dim=(2, 3)) / mask.sum(dim=(2, 3)).clamp(min=1)
                return ab + mean[..., None, None]

        return HintMean()


@pytest.fixture(scope="module")
def guided_app(live_app):
    """The running app when a hint-taking model has weights here (siggraph17), else the same
    UI (app.build_app) served in-process with a tiny hint-taking model."""
    from deepcolor.ui import ModelCatalog

    if ModelCatalog().available("hints"):
        yield live_app
        return
    import app

    catalog = ModelCatalog(models={"hintmean": _HintMean.build()})
    demo = app.build_app(catalog)
    port = _free_port()
    demo.launch(
        server_name="127.0.0.1",
        server_port=port,
        prevent_thread_lock=True,
        quiet=True,
        css=app.CSS,
        head=app.guided_ui.SUGGESTION_SCRIPT,
    )
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def _result_image(page) -> bytes:
    sources = page.locator("#guided-result img").evaluate_all("els => els.map(e => e.src)")
    assert len(sources) == 2, sources  # before (gray) and after (colour)
    return page.request.get(sources[-1]).body()


def _set_color(page, hex_color: str) -> None:
    page.locator("#guided-color button.dialog-button").click()
    field = page.locator("#guided-color input[type=text]")
    field.fill(hex_color)
    field.press("Enter")
    page.locator("#guided-status").click()  # closes the picker
    rgb = tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    page.wait_for_function(
        "c => document.querySelector('#guided-color button.dialog-button').style.background === c",
        arg=f"rgb({rgb[0]}, {rgb[1]}, {rgb[2]})",
        timeout=STEP_TIMEOUT,
    )


def _open_guided(page, url: str):
    _open(page, url, tab="Guided")
    assert page.locator("#guided-help").inner_text().startswith("1.")  # instructions
    assert not page.locator("#guided-canvas").is_visible()  # the photo is shown once
    page.locator("#guided-input input[type=file]").set_input_files(str(PHOTO))
    board = page.locator("#guided-canvas img")
    board.wait_for(timeout=STEP_TIMEOUT)
    page.wait_for_selector("#guided-status >> text=0 hint(s)", timeout=STEP_TIMEOUT)
    assert not page.locator("#guided-input").is_visible()  # the canvas replaces the upload
    return board, board.bounding_box()


def _hint_table(page) -> str:
    return page.locator("#guided-hints").inner_text()


@pytest.mark.browser
def test_browser_guided_hints_by_clicking_change_the_result(guided_app, page):
    board, box = _open_guided(page, guided_app)
    before = _result_image(page)
    assert "Small dot" in page.locator("#guided-size").inner_text()  # sizes in words

    board.click(position={"x": box["width"] * 0.75, "y": box["height"] * 0.35})  # red parrot
    page.wait_for_selector("#guided-status >> text=1 hint(s)", timeout=STEP_TIMEOUT)
    first = _result_image(page)
    assert first != before

    _set_color(page, "#2e9e3a")
    picker = page.locator("#guided-color")
    picker.locator("button.dialog-button").click()
    popup = picker.locator("input[type=text]")
    popup.wait_for(timeout=STEP_TIMEOUT)
    assert popup.is_visible()
    hsl = picker.get_by_text("HSL", exact=True)  # the picker's last mode, at its right edge
    hsl_box, block = hsl.bounding_box(), picker.bounding_box()
    assert hsl_box["x"] + hsl_box["width"] <= block["x"] + block["width"]  # not cut off
    page.locator("#guided-status").click()  # closes the picker

    board.click(position={"x": box["width"] * 0.1, "y": box["height"] * 0.2})  # the leaves
    page.wait_for_selector("#guided-status >> text=2 hint(s)", timeout=STEP_TIMEOUT)
    second = _result_image(page)
    assert second != first
    table = _hint_table(page)
    assert "#2e9e3a" in table and "\n2\n" in f"\n{table}\n".replace("\t", "\n")

    # a click on hint 1's dot selects it (nothing is added); "Remove it" then removes hint 1
    board.click(position={"x": box["width"] * 0.75, "y": box["height"] * 0.35})
    page.wait_for_function(
        "() => document.querySelector('#guided-selected input').value === '1'",
        timeout=STEP_TIMEOUT,
    )
    hints = page.locator("#guided-hints")
    assert hints.get_by_test_id("cell-1-0").count() == 1
    assert hints.get_by_test_id("cell-2-0").count() == 0  # nothing added
    page.get_by_role("button", name="Remove it").click()
    page.wait_for_selector("#guided-status >> text=1 hint(s)", timeout=STEP_TIMEOUT)
    assert "#2e9e3a" in _hint_table(page)  # hint 2 (the leaves) is the one left


@pytest.mark.browser
def test_browser_a_refused_hint_edit_leaves_the_photo_clickable(guided_app, page):
    board, box = _open_guided(page, guided_app)
    page.get_by_text("Move the selected hint", exact=True).click()
    board.click(position={"x": box["width"] * 0.5, "y": box["height"] * 0.5})  # nothing to move
    page.locator(".toast-body", has_text="no hints yet").wait_for(timeout=STEP_TIMEOUT)
    page.wait_for_timeout(1000)  # a badge would be drawn by now
    badges = page.get_by_text("Error", exact=True).evaluate_all(
        "els => els.filter(e => !e.closest('.toast-body')).map(e => e.outerHTML)"
    )
    assert badges == []  # no "Error" badge covers the photo, the hint number or the table
    page.get_by_text("Add a hint", exact=True).click()
    board.click(position={"x": box["width"] * 0.5, "y": box["height"] * 0.5}, timeout=10_000)
    page.wait_for_selector("#guided-status >> text=1 hint(s)", timeout=STEP_TIMEOUT)


@pytest.mark.browser
def test_browser_another_photo_leaves_nothing_of_the_last_one(guided_app, page):
    board, box = _open_guided(page, guided_app)
    board.click(position={"x": box["width"] * 0.5, "y": box["height"] * 0.5})
    page.wait_for_selector("#guided-status >> text=1 hint(s)", timeout=STEP_TIMEOUT)
    page.click("#guided-another")
    page.locator("#guided-input").wait_for(timeout=STEP_TIMEOUT)
    page.wait_for_function(
        "() => !document.querySelector('#guided-status').innerText.includes('hint(s)')",
        timeout=STEP_TIMEOUT,
    )  # no "1 hint(s)" left beside an empty result
    assert page.locator("#guided-result img").count() == 0
    assert page.locator("#guided-hints").get_by_test_id("cell-0-0").count() == 0


@pytest.mark.browser
def test_browser_guided_suggests_colors_to_click(live_app, page):
    from deepcolor.ui import ModelCatalog

    catalog = ModelCatalog()
    if "siggraph17" not in catalog.available("hints") or "unet_bins" not in catalog.available():
        pytest.skip("siggraph17's or unet_bins' weights are not installed")
    board, box = _open_guided(page, live_app)
    assert page.locator("#guided-model input").input_value() == "siggraph17"
    board.click(position={"x": box["width"] * 0.75, "y": box["height"] * 0.35})
    page.wait_for_selector("#guided-status >> text=1 hint(s)", timeout=STEP_TIMEOUT)
    options = page.locator("#guided-suggestions label")
    options.first.wait_for(timeout=STEP_TIMEOUT)
    assert 5 <= options.count() <= 8
    texts = options.all_inner_texts()
    colours = [re.search(r"#[0-9a-f]{6}", t).group(0) for t in texts]
    assert len(set(colours)) == len(colours)
    swatch = options.nth(2).evaluate("el => getComputedStyle(el, '::before').backgroundColor")
    r, g, b = (int(colours[2][i : i + 2], 16) for i in (1, 3, 5))
    assert swatch == f"rgb({r}, {g}, {b})"  # each option is painted in its colour
    options.nth(2).click()
    page.wait_for_function(
        "c => document.querySelector('#guided-hints').innerText.includes(c)",
        arg=colours[2],
        timeout=STEP_TIMEOUT,
    )
    page.wait_for_selector("#guided-status >> text=1 hint(s)", timeout=STEP_TIMEOUT)


@pytest.mark.browser
def test_browser_reference_and_prompt_tabs_say_what_to_do(live_app, page, tmp_path):
    gray = tmp_path / "old-street.png"
    Image.open(PHOTO).convert("L").save(gray)
    _open(page, live_app, tab="Reference")
    _upload(page, "#reference-photo", gray)
    warning = page.locator("#reference-warning")
    expect(warning).to_contain_text("black-and-white", timeout=STEP_TIMEOUT)
    assert "colour photo" in warning.inner_text()
    page.get_by_role("tab", name="Prompt").click()
    notice = page.locator("#prompt-notice").inner_text()
    assert "DEEPCOLOR_" not in notice and "environment" not in notice
    if "not available" in notice:
        assert "Compare" in notice and "Guided" in notice


@pytest.mark.browser
def test_browser_batch_keeps_folders_previews_and_lists_failures(live_app, page, tmp_path):
    import zipfile

    archive = tmp_path / "family-album.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(PHOTO, "1950s/parrots.jpg")
        zf.write(ROOT / "deepcolor" / "examples" / "kodim22-barn.jpg", "1950s/farm/barn.jpg")
        zf.writestr("1950s/torn.jpg", b"\xff\xd8\xff\xe0 torn")
    _open(page, live_app, tab="Batch")
    assert not page.locator("#batch-failures").is_visible()
    _upload(page, "#batch-files", archive)
    page.click("#batch-run")
    status = page.locator("#batch-status")
    # the text, not a node holding it: Gradio may re-render the Markdown while a locator waits
    expect(status).to_contain_text("2 photo(s) colourised, 1 failed", timeout=STEP_TIMEOUT)
    failures = page.locator("#batch-failures")
    cell = failures.get_by_test_id("cell-0-1").get_by_text("damaged")
    assert "family-album.zip/1950s/torn.jpg" in failures.inner_text()
    assert cell.evaluate("el => el.scrollWidth <= el.clientWidth + 1")  # the reason is not cut
    preview = page.locator("#batch-preview img")
    preview.first.wait_for(timeout=STEP_TIMEOUT)
    assert preview.count() == 2
    link = page.locator("#batch-zip a").first
    link.wait_for(timeout=STEP_TIMEOUT)
    body = page.request.get(link.get_attribute("href")).body()
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert sorted(zf.namelist()) == ["1950s/farm/barn.png", "1950s/parrots.png"]

    good = tmp_path / "holiday.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.write(PHOTO, "parrots.jpg")
    page.locator("#batch-files button[aria-label='Clear']").first.click()
    # the clear must land before the next upload, or its change event can empty the new one
    page.locator(f"#batch-files >> text={archive.name}").wait_for(
        state="hidden", timeout=STEP_TIMEOUT
    )
    _upload(page, "#batch-files", good)
    page.click("#batch-run")
    expect(status).to_contain_text("1 photo(s) colourised.", timeout=STEP_TIMEOUT)
    failures.wait_for(state="hidden", timeout=STEP_TIMEOUT)  # nothing failed: no table
