"""A participant completes a short session in Debian's Chromium; the organiser sees the rates.

Screenshots go to the test's temporary folder, so a test run never changes the repository; to
refresh the README's study screenshots deliberately:
``DEEPCOLOR_SCREENSHOT_DIR=docs/screenshots .venv/bin/python -m pytest tests/test_study_browser.py``.
"""

import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
from browser import chromium
from PIL import Image, ImageDraw

from study.db import Database, Response
from study.prepare import prepare_study
from study.simulate import ServerProcess, simulate

TOKEN = "organiser-secret-token"

pytestmark = pytest.mark.browser


def scene(i: int, size=(240, 170)) -> Image.Image:
    """A small colour "photo": sky, hills, a sun and a house, different for each i."""
    w, h = size
    y = np.linspace(0, 1, h)[:, None, None]
    sky = (1 - y) * np.array([70, 130, 220]) + y * np.array([190, 220, 250])
    image = Image.fromarray(np.broadcast_to(sky, (h, w, 3)).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    draw.ellipse((30 + 40 * i, 15, 70 + 40 * i, 55), fill=(250, 200, 40))
    draw.polygon(
        [(0, 120), (80 + 20 * i, 90), (170, 125), (240, 100), (240, 170), (0, 170)],
        fill=(60, 140 - 10 * i, 50),
    )
    draw.rectangle((150, 105, 200, 150), fill=(180, 60, 40))
    draw.polygon([(145, 105), (175, 80), (205, 105)], fill=(110, 40, 30))
    return image


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    photos = root / "photos"
    photos.mkdir()
    for i in range(5):  # 4 test + 1 practice trial: each photo once
        scene(i).save(photos / f"scene{i}.png")
    out = root / "S"
    prepare_study(
        photos,
        ["gray", "tint"],
        out,
        test_trials=4,
        practice_trials=1,
        sentinel_rate=0.25,
        exposure_ms=800,
        sentinel_threshold=0.0,  # keep this one participant whatever they answer
        name="Colour study (demo)",
        database_url=f"sqlite:///{out}/study.sqlite",
        progress=False,
        torch_threads=1,  # tiny images: one thread beats oversubscribed cores
    )
    return out


def test_participant_session_and_organiser_rates_in_chromium(study_dir, tmp_path):
    shot_dir = Path(os.environ.get("DEEPCOLOR_SCREENSHOT_DIR") or tmp_path / "shots")
    shot_dir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{study_dir}/study.sqlite"
    with ServerProcess(study_dir, TOKEN, database_url=url) as server, chromium() as browser:
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        blocked = []  # the pages' own scripts and styles must pass their Content-Security-Policy
        page.on(
            "console",
            lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None,
        )
        page.goto(server.url + "/join")
        assert "agree to take part" in page.content()
        page.screenshot(path=str(shot_dir / "study-consent.png"))
        page.check("#consent")
        page.click("#start")

        answered, shots, reloaded = 0, set(), False
        while "Thank you" not in page.content():
            if "/feedback/" in page.url:
                assert re.search(r"Correct\.|Not quite\.", page.content())
                if "feedback" not in shots:
                    page.screenshot(path=str(shot_dir / "study-feedback.png"))
                    shots.add("feedback")
                page.click("#continue")
                continue
            buttons = page.locator("button[name=answer]:not([disabled])")
            buttons.first.wait_for()  # enabled once both images have loaded
            progress = page.inner_text("#progress-text")
            assert progress.startswith(f"{answered + 1} / 5")
            if "trial" not in shots:
                page.screenshot(path=str(shot_dir / "study-trial.png"))
                shots.add("trial")
            if answered == 2 and not reloaded:
                # The exposure limit hides the photos; a reload resumes the same trial.
                page.wait_for_selector("img.masked", state="attached", timeout=5000)
                page.screenshot(path=str(shot_dir / "study-trial-masked.png"))
                page.reload()
                assert page.inner_text("#progress-text").startswith(f"{answered + 1} / 5")
                reloaded = True
                continue
            buttons.nth(answered % 2).click()
            page.wait_for_load_state()
            answered += 1
        assert answered == 5
        page.screenshot(path=str(shot_dir / "study-done.png"))

        db = Database(url)
        try:
            with db.read() as session:
                assert session.query(Response).count() == 5
        finally:
            db.dispose()

        # A few simulated participants, so the organiser's chart has something to show.
        crowd = simulate(server.url, 8, timeout=60)
        assert crowd.errors == [] and crowd.acknowledged == 8 * 5

        page.goto(server.url + "/organiser")
        assert "Organiser token" in page.content()  # no token, no results
        page.fill("#token", TOKEN)
        page.click("#login")
        page.wait_for_selector("#rates")
        rows = page.locator("#rates tbody tr").all_inner_texts()
        assert [r.split()[0] for r in rows] == ["gray", "tint"]
        judged = sum(int(r.split()[1]) for r in rows)
        assert judged == 9 * 3  # 9 people x 4 test trials, one of them a sentinel
        assert any("%" in r for r in rows)
        # Polled from here: wait_for_function evaluates a string, which the CSP forbids.
        chart = page.locator("img.chart")
        deadline = time.monotonic() + 10
        while chart.evaluate("img => img.naturalWidth") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert chart.evaluate("img => img.naturalWidth") > 0
        assert blocked == []
        page.screenshot(path=str(shot_dir / "study-organiser.png"), full_page=True)
