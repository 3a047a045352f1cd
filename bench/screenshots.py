"""Screenshots of the app as a visitor sees it, one per situation, taken in Debian's Chromium.

    python bench/screenshots.py [--out docs/screenshots] [--url http://127.0.0.1:7860/]

Without ``--url`` it starts ``python app.py`` on a free port for the run. The pictures are
written only here, on purpose (the tests never write into the repository); look at them before
committing them.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from browser import CHROMIUM, CHROMIUM_ARGS, open_app  # noqa: E402  (the tests' settings)

EXAMPLES = ROOT / "deepcolor" / "examples"
PHOTO = EXAMPLES / "kodim23-parrots.jpg"
STEP = 120_000  # ms for one UI round trip on a busy CPU


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(log: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "app.py", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"app.py exited:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return process, url
        except OSError:
            time.sleep(0.5)
    process.terminate()
    raise SystemExit(f"app.py did not start:\n{log.read_text()[-2000:]}")


def make_inputs(folder: Path) -> dict[str, Path]:
    """The files a visitor might bring: a tiny image, a damaged one, a gray reference, zips."""
    files = {
        "tiny": folder / "pixel.png",
        "corrupt": folder / "grandma.jpg",
        "gray": folder / "old-street.png",
        "album": folder / "family-album.zip",
        "clean": folder / "holiday.zip",
        "large": folder / "scan-18mp.jpg",
    }
    Image.new("RGB", (1, 1), (120, 80, 40)).save(files["tiny"])
    files["corrupt"].write_bytes(b"\xff\xd8\xff\xe0 this JPEG was cut off")
    Image.open(EXAMPLES / "kodim22-barn.jpg").convert("L").save(files["gray"])
    with zipfile.ZipFile(files["album"], "w") as zf:
        zf.write(PHOTO, "1950s/parrots.jpg")
        zf.write(EXAMPLES / "kodim22-barn.jpg", "1950s/farm/barn.jpg")
        zf.writestr("1960s/torn.jpg", b"\xff\xd8\xff\xe0 torn")
    with zipfile.ZipFile(files["clean"], "w") as zf:
        for photo in sorted(EXAMPLES.glob("*.jpg")):
            zf.write(photo, f"summer/{photo.name}")
    gradient = np.linspace(0, 255, 4800, dtype=np.uint8)[None, :].repeat(3800, axis=0)
    buffer = io.BytesIO()
    Image.fromarray(gradient).save(buffer, format="JPEG", quality=80)
    files["large"].write_bytes(buffer.getvalue())
    return files


def _open(page, url: str, tab: str | None = None) -> None:
    open_app(page, url, tab, timeout=STEP)


def _upload(page, component: str, path: Path) -> None:
    page.locator(f"{component} input[type=file]").first.set_input_files(str(path))


def compare(page, url: str, files: dict, out: Path) -> None:
    _open(page, url)
    _upload(page, "#compare-input", PHOTO)
    page.wait_for_selector("#compare-info >> text=384x256", timeout=STEP)
    page.click("#compare-run")
    page.wait_for_selector("#compare-status >> text=result(s)", timeout=STEP)
    page.wait_for_timeout(800)
    page.screenshot(path=str(out / "app-compare.png"), full_page=True)
    # then a damaged file: said once, and the earlier result leaves the screen
    _upload(page, "#compare-input", files["corrupt"])
    page.wait_for_selector("#compare-info >> text=Cannot use this file", timeout=STEP)
    page.click("#compare-run")
    page.locator(".toast-body").first.wait_for(timeout=STEP)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(out / "app-error.png"), full_page=True)


def sizes(page, url: str, files: dict, out: Path) -> None:
    _open(page, url)
    _upload(page, "#compare-input", files["tiny"])
    page.wait_for_selector("#compare-info >> text=too small", timeout=STEP)
    page.screenshot(path=str(out / "app-too-small.png"), full_page=False)
    _open(page, url)
    _upload(page, "#compare-input", files["large"])
    page.wait_for_selector("#compare-info >> text=downscaled", timeout=STEP)
    page.screenshot(path=str(out / "app-large.png"), full_page=False)


def guided(page, url: str, files: dict, out: Path) -> None:
    _open(page, url, "Guided")
    _upload(page, "#guided-input", PHOTO)
    board = page.locator("#guided-canvas img")
    board.wait_for(timeout=STEP)
    page.wait_for_selector("#guided-status >> text=0 hint(s)", timeout=STEP)
    box = board.bounding_box()
    board.click(position={"x": box["width"] * 0.75, "y": box["height"] * 0.35})
    page.wait_for_selector("#guided-status >> text=1 hint(s)", timeout=STEP)
    page.locator("#guided-suggestions label").first.wait_for(timeout=STEP)
    page.locator("#guided-suggestions label").nth(1).click()
    page.wait_for_timeout(3000)
    page.screenshot(path=str(out / "app-guided.png"), full_page=True)
    page.locator("#guided-color button.dialog-button").click()
    page.wait_for_timeout(500)
    page.locator("#guided-color").screenshot(path=str(out / "app-guided-picker.png"))


def reference(page, url: str, files: dict, out: Path) -> None:
    _open(page, url, "Reference")
    _upload(page, "#reference-photo", files["gray"])
    page.wait_for_selector("#reference-warning >> text=black-and-white", timeout=STEP)
    page.screenshot(path=str(out / "app-reference-warning.png"), full_page=True)


def prompt(page, url: str, files: dict, out: Path) -> None:
    _open(page, url, "Prompt")
    page.wait_for_timeout(500)
    page.screenshot(path=str(out / "app-prompt.png"), full_page=False)


def batch(page, url: str, files: dict, out: Path) -> None:
    for name, expected, shot in (
        ("album", "1 failed", "app-batch.png"),
        ("clean", "4 photo(s) colourised.", "app-batch-no-failures.png"),
    ):
        _open(page, url, "Batch")
        _upload(page, "#batch-files", files[name])
        page.wait_for_selector(f"#batch-files >> text={files[name].name}", timeout=STEP)
        page.click("#batch-run")
        page.wait_for_selector(f"#batch-status >> text={expected}", timeout=STEP)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(out / shot), full_page=True)


SCENES: dict[str, Callable] = {
    "compare": compare,
    "sizes": sizes,
    "guided": guided,
    "reference": reference,
    "prompt": prompt,
    "batch": batch,
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--url", default=None, help="a running app (default: start app.py)")
    parser.add_argument("--only", nargs="*", choices=sorted(SCENES), help="some scenes only")
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="deepcolor-shots-") as tmp:
        files = make_inputs(Path(tmp))
        process, url = (None, args.url) if args.url else start_app(Path(tmp) / "app.log")
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for name in args.only or SCENES:
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    SCENES[name](page, url, files, args.out)
                    page.close()
                    print(f"{name}: done")
                browser.close()
        finally:
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
    print(f"screenshots in {args.out}")


if __name__ == "__main__":
    main()
