"""The study: prepare, the participant flow, hostile requests, organiser pages, the report.

In-process (FastAPI's TestClient) against SQLite, and against PostgreSQL when DATABASE_URL_TEST
is set. The load and fault tests against a real server process are in test_study_load.py.
"""

import io
import re
import uuid

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select

from study.acceptance import make_photos as colourful_photos
from study.cli import main
from study.db import Database, Participant, Response, Trial
from study.manifest import read_manifest
from study.prepare import prepare_study
from study.server import create_app

TOKEN = "organiser-secret-token"
PHOTOS = 8  # = test + practice trials: each participant sees every photo once


def make_photos(folder, count=PHOTOS, size=(48, 36)):
    """``count`` colourful photos and a gray one (which prepare skips)."""
    colourful_photos(folder, count, size)
    Image.fromarray(np.full((size[1], size[0], 3), 120, np.uint8)).save(folder / "grey.png")
    return folder


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    out = root / "S"
    prepare_study(
        make_photos(root / "photos"),
        ["gray", "tint"],
        out,
        protocol="2afc",
        test_trials=6,
        practice_trials=2,
        sentinel_rate=0.2,
        sentinel_threshold=0.75,
        max_chance_pass=1.0,  # a tiny study: one sentinel, whatever chance would pass
        database_url=f"sqlite:///{out}/study.sqlite",
        progress=False,
        torch_threads=1,  # tiny images: one thread beats oversubscribed cores
    )
    return out


@pytest.fixture
def client(backend):
    folder, url = backend
    app = create_app(folder, organiser_token=TOKEN, database_url=url)
    with TestClient(app) as test_client:
        yield test_client
    app.app.state.service.db.dispose()


@pytest.fixture
def db(backend):
    database = Database(backend[1])
    yield database
    database.dispose()


def snapshot(db):
    """Everything a request could change."""
    with db.read() as session:
        return (
            session.scalar(select(func.count()).select_from(Participant)),
            session.scalar(select(func.count()).select_from(Trial)),
            sorted(
                session.execute(
                    select(Response.trial_id, Response.submit_key, Response.answer)
                ).all()
            ),
            sorted(session.execute(select(Participant.id, Participant.answered)).all()),
        )


def join(client):
    response = client.post("/api/join", json={"consent": True})
    assert response.status_code == 201
    return response.json()


def answer(client, state, choice="left", key=None):
    body = {
        "trial": state["trial"]["id"],
        "answer": choice,
        "key": key or uuid.uuid4().hex,
        "rt_ms": 500,
    }
    return client.post(f"/api/p/{state['token']}/answer", json=body)


# --- prepare --------------------------------------------------------------------------------------
def test_prepare_cli_reports_errors_as_messages(tmp_path, capsys):
    assert (
        main(
            [
                "prepare",
                "--images",
                str(tmp_path / "missing"),
                "--models",
                "gray",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "no such folder" in capsys.readouterr().err
    make_photos(tmp_path / "p", count=1)
    assert (
        main(
            [
                "prepare",
                "--images",
                str(tmp_path / "p"),
                "--models",
                "gray,nope",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "unknown model 'nope'" in err and "gray" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_prepare_stores_opaque_same_format_stimuli(template):
    manifest = read_manifest(template)
    assert len(manifest.photos) == PHOTOS  # the grey photo was skipped
    files = sorted((template / "media").iterdir())
    assert len(files) == len(manifest.stimuli) == PHOTOS * (2 + 2)  # original, sentinel, 2 models
    assert all(re.fullmatch(r"[0-9a-f]{32}\.png", f.name) for f in files)
    by_key = {(s.photo, s.condition): s for s in manifest.stimuli}
    photo = manifest.photos[0]
    images = {
        c: Image.open(template / "media" / f"{by_key[(photo, c)].media_id}.png")
        for c in ("real", "sentinel", "gray", "tint")
    }
    assert {im.size for im in images.values()} == {(48, 36)}
    assert {im.mode for im in images.values()} == {"RGB"}
    assert all(
        not (set(im.info) & {"exif", "comment", "dpi", "icc_profile"}) for im in images.values()
    )
    real, sentinel = (np.asarray(images[c], float) for c in ("real", "sentinel"))
    assert np.abs(real - sentinel).mean() > 20  # an obviously wrong colourisation
    gray = np.asarray(images["gray"], float)
    assert np.abs(gray[..., 0] - gray[..., 2]).max() <= 2  # the gray baseline has no colour


def test_serve_cli_prints_a_generated_organiser_token(template, monkeypatch, capsys):
    import study.server

    started = {}
    monkeypatch.delenv("STUDY_ORGANISER_TOKEN", raising=False)
    monkeypatch.setattr(
        study.server, "serve", lambda folder, **kw: started.update(kw, folder=folder)
    )
    assert main(["serve", str(template), "--port", "8123"]) == 0
    out = capsys.readouterr().out
    token = re.search(r"organiser token: (\S+)", out).group(1)
    assert started["organiser_token"] == token and len(token) >= 20 and started["port"] == 8123
    monkeypatch.setenv("STUDY_ORGANISER_TOKEN", "from-the-environment")
    assert main(["serve", str(template)]) == 0
    assert started["organiser_token"] == "from-the-environment"
    assert "organiser token:" not in capsys.readouterr().out
    # Never on the command line (every user sees it in ps): from a file or the environment.
    assert main(["serve", str(template), "--token", "long-enough-token"]) == 2
    assert "STUDY_ORGANISER_TOKEN or in a file given with --token-file" in capsys.readouterr().err
    token_file = template.parent / "token.txt"
    token_file.write_text("from-a-file-token\n")
    assert main(["serve", str(template), "--token-file", str(token_file)]) == 0
    assert started["organiser_token"] == "from-a-file-token"
    token_file.write_text("short")
    assert main(["serve", str(template), "--token-file", str(token_file)]) == 2
    assert "at least 12 characters" in capsys.readouterr().err
    assert main(["serve", str(template), "--token-file", str(template / "nope")]) == 2
    assert "cannot read the organiser token" in capsys.readouterr().err
    assert main(["serve", str(template.parent / "missing")]) == 2
    assert "no such study folder" in capsys.readouterr().err


# --- participant flow ---------------------------------------------------------------------------
def test_browser_flow_consent_practice_feedback_resume_done(client):
    assert client.get("/join").status_code == 200
    refused = client.post("/join", data={}, follow_redirects=False)
    assert refused.status_code == 400
    joined = client.post("/join", data={"consent": "yes"}, follow_redirects=False)
    assert joined.status_code == 303
    link = joined.headers["location"]
    page = client.get(link)
    assert "1 / 8" in page.text and "practice" in page.text
    trial = re.search(r'name="trial" value="([^"]+)"', page.text).group(1)
    key = re.search(r'name="key" value="([^"]+)"', page.text).group(1)
    assert client.get(link).text.count(trial) >= 1  # a reload shows the same trial
    sent = client.post(
        f"{link}/answer",
        data={"trial": trial, "answer": "left", "key": key, "rt_ms": "800"},
        follow_redirects=False,
    )
    assert sent.status_code == 303 and sent.headers["location"] == f"{link}/feedback/{trial}"
    feedback = client.get(sent.headers["location"])
    assert ("Correct." in feedback.text) != ("Not quite." in feedback.text)
    page = client.get(link)
    assert "2 / 8" in page.text and trial not in page.text
    # The rest through the JSON API; its state is the same participant's.
    state = client.get(f"/api/p/{link.rsplit('/', 1)[1]}").json()
    assert state["answered"] == 1 and state["trial"]["number"] == 2
    while not state["done"]:
        response = answer(client, state)
        assert response.status_code == 200
        state = response.json()
    assert "Thank you" in client.get(link).text


def test_invitation_link_needs_consent_first(client, db):
    created = client.post(
        "/organiser/invites", data={"count": 2}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert created.status_code == 200
    links = re.findall(r"http://testserver/p/([A-Za-z0-9_-]+)", created.text)
    assert len(links) == 2
    token = links[0]
    assert "agree to take part" in client.get(f"/p/{token}").text
    assert client.get(f"/api/p/{token}").json()["trial"] is None
    before = snapshot(db)
    assert client.post(f"/p/{token}/consent", data={}).status_code == 400
    assert snapshot(db) == before
    assert (
        client.post(
            f"/p/{token}/consent", data={"consent": "yes"}, follow_redirects=False
        ).status_code
        == 303
    )
    state = client.get(f"/api/p/{token}").json()
    assert state["consented"] and state["trial"]["number"] == 1


def test_pages_and_images_do_not_reveal_which_image_is_real(client, backend):
    manifest = read_manifest(backend[0])
    state = join(client)
    token = state["token"]
    for _ in range(3):
        page = client.get(f"/p/{token}").text
        secrets_ = (
            [s.media_id for s in manifest.stimuli]
            + manifest.photos
            + ["gray", "tint", "sentinel", "real", "left", "right"]
        )
        visible = re.sub(r'value="(left|right)"', "", page)  # the two answer buttons
        for secret in secrets_:
            assert secret not in visible.replace("Real colour", ""), secret
        urls = re.findall(r'<img src="([^"]+)"', page)
        assert [u.rsplit("/", 1)[1] for u in urls] == ["1", "2"]
        for url in urls:
            image = client.get(url)
            assert image.status_code == 200 and image.headers["content-type"] == "image/png"
            assert not {"etag", "last-modified", "content-disposition"} & set(image.headers)
            assert not (set(Image.open(io.BytesIO(image.content)).info) & {"exif", "comment"})
        state = answer(client, state).json()


def test_single_image_protocol_with_one_model_per_participant(tmp_path):
    out = tmp_path / "single"
    prepare_study(
        make_photos(tmp_path / "photos", count=6),
        ["gray", "tint"],
        out,
        protocol="single",
        allocation="per-model",
        test_trials=5,
        practice_trials=1,
        sentinel_rate=0.2,
        max_chance_pass=1.0,
        database_url=f"sqlite:///{out}/study.sqlite",
        progress=False,
        torch_threads=1,  # tiny images: one thread beats oversubscribed cores
    )
    url = f"sqlite:///{out}/study.sqlite"
    app = create_app(out, organiser_token=TOKEN, database_url=url)
    db = Database(url)
    try:
        with TestClient(app) as client:
            states = [join(client) for _ in range(4)]
            assert len(states[0]["trial"]["images"]) == 1  # one photo per screen
            state = states[0]
            assert client.get(state["trial"]["images"][0]).status_code == 200
            assert client.get(state["trial"]["images"][0][:-1] + "2").status_code == 404
            assert answer(client, state, choice="left").status_code == 422
            assert answer(client, state, choice="real").status_code == 200
        with db.read() as session:
            people = session.execute(select(Participant.id, Participant.model)).all()
            assert sorted(m for _, m in people) == ["gray", "gray", "tint", "tint"]  # balanced
            for pid, model in people:
                conditions = set(
                    session.scalars(
                        select(Trial.condition).where(
                            Trial.participant_id == pid, Trial.phase == "test"
                        )
                    )
                )
                assert conditions <= {model, "real", "sentinel"} and model in conditions
                assert (
                    session.scalar(
                        select(func.count())
                        .select_from(Trial)
                        .where(Trial.participant_id == pid, Trial.right_id.is_not(None))
                    )
                    == 0
                )
    finally:
        db.dispose()
        app.app.state.service.db.dispose()


# --- hostile requests ---------------------------------------------------------------------------
def test_unknown_ids_get_404_and_change_nothing(client, db):
    state = join(client)
    token, trial = state["token"], state["trial"]["id"]
    before = snapshot(db)
    unknown = "x" * 16
    assert client.get(f"/api/p/{unknown}").status_code == 404
    assert client.get(f"/p/{unknown}").status_code == 404
    assert client.get("/p/../../etc/passwd").status_code == 404
    assert (
        client.post(
            f"/api/p/{unknown}/answer", json={"trial": trial, "answer": "left", "key": "k" * 16}
        ).status_code
        == 404
    )
    assert (
        client.post(
            f"/api/p/{token}/answer", json={"trial": unknown, "answer": "left", "key": "k" * 16}
        ).status_code
        == 404
    )
    assert (
        client.post(
            f"/p/{token}/answer", data={"trial": unknown, "answer": "left", "key": "k" * 16}
        ).status_code
        == 404
    )
    assert client.get(f"/p/{token}/img/{unknown}/1").status_code == 404
    assert client.get(f"/p/{token}/img/{trial}/3").status_code == 404
    assert client.get(f"/p/{unknown}/img/{trial}/1").status_code == 404
    assert client.get(f"/p/{token}/feedback/{trial}").status_code == 404  # not answered yet
    assert client.post(f"/api/p/{unknown}/consent", json={"consent": True}).status_code == 404
    assert snapshot(db) == before


def test_another_participants_trial_is_refused(client, db):
    alice, bob = join(client), join(client)
    before = snapshot(db)
    stolen = {"trial": bob["trial"]["id"], "answer": "left", "key": uuid.uuid4().hex}
    assert client.post(f"/api/p/{alice['token']}/answer", json=stolen).status_code == 404
    assert client.post(f"/p/{alice['token']}/answer", data=stolen).status_code == 404
    assert client.get(f"/p/{alice['token']}/img/{bob['trial']['id']}/1").status_code == 404
    assert snapshot(db) == before
    assert answer(client, bob).status_code == 200  # Bob's trial is still his to answer


def test_repeated_and_out_of_order_submits_get_409_and_change_nothing(client, db):
    state = join(client)
    key = uuid.uuid4().hex
    first = answer(client, state, key=key)
    assert first.status_code == 200
    after_first = snapshot(db)
    replay = answer(client, state, key=key)
    assert replay.status_code == 409 and replay.json()["status"] == "already_recorded"
    other = answer(client, state, choice="right")
    assert other.status_code == 409 and other.json()["status"] == "already_answered"
    form = client.post(
        f"/p/{state['token']}/answer",
        data={"trial": state["trial"]["id"], "answer": "right", "key": uuid.uuid4().hex},
    )
    assert form.status_code == 409
    current = first.json()
    reused = answer(client, current, key=key)  # a key already used for another answer
    assert reused.status_code == 409 and reused.json()["status"] == "key_reused"
    with db.read() as session:  # a later trial, skipping the current one
        later = session.scalar(
            select(Trial.public_id).where(
                Trial.position == 5, Trial.participant.has(Participant.token == state["token"])
            )
        )
    skipped = answer(client, {"token": state["token"], "trial": {"id": later}})
    assert skipped.status_code == 409 and skipped.json()["status"] == "not_current"
    assert snapshot(db) == after_first


def test_malformed_and_oversized_bodies_get_4xx_and_change_nothing(client, db):
    state = join(client)
    token, trial = state["token"], state["trial"]["id"]
    before = snapshot(db)
    url = f"/api/p/{token}/answer"
    good = {"trial": trial, "answer": "left", "key": uuid.uuid4().hex}
    assert client.post(url, json={**good, "answer": "maybe"}).status_code == 422
    assert client.post(url, json={**good, "key": "short"}).status_code == 422
    assert client.post(url, json={**good, "key": "bad key with spaces!"}).status_code == 422
    assert client.post(url, json={**good, "rt_ms": -5}).status_code == 422
    assert client.post(url, json={"trial": trial}).status_code == 422
    assert (
        client.post(
            url, content=b"{not json", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    padded = {**good, "padding": "x" * 20_000}
    assert client.post(url, json=padded).status_code == 413
    assert (
        client.post(f"/p/{token}/answer", data={**good, "padding": "x" * 20_000}).status_code == 413
    )

    def stream():  # no Content-Length: the limit must hold while reading
        for _ in range(40):
            yield b"x" * 1024

    assert (
        client.post(url, content=stream(), headers={"content-type": "application/json"}).status_code
        == 413
    )
    assert (
        client.post(
            "/api/join", content=b"x" * 17_000, headers={"content-type": "application/json"}
        ).status_code
        == 413
    )
    assert snapshot(db) == before
    assert client.post(url, json=good).status_code == 200  # the same answer, well-formed, is fine


def test_organiser_pages_need_the_token(client, db):
    join(client)
    before = snapshot(db)
    for path in (
        "/organiser",
        "/organiser/summary.json",
        "/organiser/responses.csv",
        "/organiser/acceptance.csv",
        "/organiser/chart.png",
    ):
        assert client.get(path).status_code == 401, path
        assert (
            client.get(path, headers={"Authorization": "Bearer wrong-token-123"}).status_code == 401
        ), path
    assert client.post("/organiser/invites", data={"count": 5}).status_code == 401
    assert client.post("/organiser/login", data={"token": "wrong"}).status_code == 401
    assert "study_organiser" not in client.cookies
    assert snapshot(db) == before
    assert client.get("/organiser", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert (
        client.post("/organiser/login", data={"token": TOKEN}, follow_redirects=False).status_code
        == 303
    )
    assert client.get("/organiser").status_code == 200  # the login cookie


# --- results ------------------------------------------------------------------------------------
def test_organiser_rates_and_report_cli_agree_with_the_database(
    client, backend, db, capsys, monkeypatch
):
    for i in range(4):
        state = join(client)
        while not state["done"]:
            state = answer(client, state, choice="left" if i % 2 else "right").json()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    summary = client.get("/organiser/summary.json", headers=auth).json()
    assert summary["participation"] == {
        "participants": 4,
        "consented": 4,
        "finished": 4,
        "abandoned": 0,
        "answers": 32,
    }
    # The same numbers straight from the tables: sentinel accuracy below 75 % excludes a person.
    with db.read() as session:
        rows = session.execute(
            select(Trial.participant_id, Trial.condition, Response.correct, Response.judged_real)
            .join(Response, Response.trial_id == Trial.id)
            .where(Trial.phase == "test")
        ).all()
    frame = pd.DataFrame(rows, columns=["participant", "condition", "correct", "judged_real"])
    accuracy = frame[frame["condition"] == "sentinel"].groupby("participant")["correct"].mean()
    excluded = set(accuracy[accuracy < read_manifest(backend[0]).sentinel_threshold].index)
    assert summary["excluded"] == len(excluded)
    kept = frame[~frame["participant"].isin(excluded)]
    for row in summary["models"]:
        part = kept[kept["condition"] == row["condition"]]
        assert row["n"] == len(part) and row["k"] == int(part["judged_real"].sum())
        if row["n"]:
            assert row["rate"] == pytest.approx(part["judged_real"].mean())
            assert row["wilson_low"] <= row["rate"] <= row["wilson_high"]
            assert row["bootstrap_low"] <= row["rate"] <= row["bootstrap_high"]
    page = client.get("/organiser", headers=auth).text
    assert "Public acceptance by model" in page and "gray" in page and "tint" in page
    csv = client.get("/organiser/responses.csv", headers=auth)
    assert len(pd.read_csv(io.StringIO(csv.text))) == 32
    chart = client.get("/organiser/chart.png", headers=auth)
    assert Image.open(io.BytesIO(chart.content)).format == "PNG"

    folder, url = backend
    monkeypatch.setenv("DATABASE_URL", url)  # the CLI finds the database the way `serve` does
    assert main(["report", str(folder), "--reps", "200"]) == 0
    out = capsys.readouterr().out
    assert "gray" in out and "tint" in out and "Wilson" in out
    written = pd.read_csv(folder / "report" / "acceptance.csv")
    assert written["condition"].tolist() == ["gray", "tint"]
    assert written["n"].tolist() == [row["n"] for row in summary["models"]]
    assert len(pd.read_csv(folder / "report" / "responses.csv")) == 32
    assert Image.open(folder / "report" / "acceptance.png").size[0] > 100
