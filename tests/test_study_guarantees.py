"""The study's guarantees against gaming and misuse, each with its exact status or message.

In-process (FastAPI's TestClient) against SQLite, and against PostgreSQL when DATABASE_URL_TEST
is set: strict JSON, images only while a trial is current and within its exposure, security
headers, organiser sessions, CSV formulas, replayed forms, the join rate limit, invitation-only
studies, idempotent joins, released abandoned participants, join cost, the report's cache and
the database the report reads.
"""

import io
import json
import os
import re
import shutil
import uuid

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import event, func, select, text, update

from study.acceptance import make_photos, prepare_template
from study.cli import main
from study.db import CellCount, Database, JoinAllowance, Participant, Trial
from study.manifest import read_manifest
from study.prepare import has_real_color
from study.ratelimit import JoinLimiter
from study.server import create_app
from study.service import LOAD_ALLOWANCE_S

TOKEN = "organiser-secret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PHOTOS = 8


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return prepare_template(
        tmp_path_factory.mktemp("guarantees"),
        PHOTOS,  # 6 test + 2 practice trials: each photo once
        sentinel_rate=0.2,
        sentinel_threshold=0.75,
        max_chance_pass=1.0,  # a tiny study: one sentinel
        name="S",  # the study name the report's messages quote
    )


def edit_manifest(folder, **changes):
    path = folder / "study.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.fixture
def make_client(backend):
    """make_client(**create_app options) -> TestClient on a fresh copy of the study."""
    folder, url = backend
    apps = []

    def make(base_url="http://testserver", **options):
        app = create_app(folder, organiser_token=TOKEN, database_url=url, **options)
        apps.append(app)
        client = TestClient(app, base_url=base_url)
        client.__enter__()
        return client

    yield make
    for app in apps:
        app.app.state.service.db.dispose()


def join(client, **extra):
    response = client.post("/api/join", json={"consent": True, **extra})
    assert response.status_code in (200, 201), response.text
    return response.json()


def answer_body(state, choice="left", **extra):
    return {"trial": state["trial"]["id"], "answer": choice, "key": uuid.uuid4().hex, **extra}


def answer(client, state, choice="left"):
    response = client.post(f"/api/p/{state['token']}/answer", json=answer_body(state, choice))
    assert response.status_code == 200, response.text
    return response.json()


# --- strict JSON ----------------------------------------------------------------------------------
def test_nan_infinity_and_loose_types_get_422_and_store_nothing(make_client, backend):
    client = make_client()
    state = join(client)
    url = f"/api/p/{state['token']}/answer"
    good = answer_body(state)
    for raw in (
        json.dumps(good)[:-1] + ', "rt_ms": NaN}',
        json.dumps(good)[:-1] + ', "rt_ms": Infinity}',
        json.dumps(good)[:-1] + ', "rt_ms": -Infinity}',
        json.dumps({**good, "answer": None}).replace("null", "NaN"),
    ):
        response = client.post(url, content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 422, raw
        assert response.json()["error"] == "invalid request"
    for loose in ({"rt_ms": True}, {"rt_ms": "700"}, {"rt_ms": 700.5}, {"key": 12345678}):
        response = client.post(url, json={**good, **loose})
        assert response.status_code == 422, loose
        assert response.json()["detail"][0]["loc"][-1] == next(iter(loose))
    assert client.post("/api/join", json={"consent": "yes"}).status_code == 422
    assert client.get(f"/api/p/{state['token']}").json()["answered"] == 0
    assert client.post(url, json={**good, "rt_ms": 700}).status_code == 200


# --- images ---------------------------------------------------------------------------------------
def test_images_are_served_only_for_the_current_trial(make_client):
    client = make_client()
    state = join(client)
    first = state["trial"]["images"]
    sizes = {len(client.get(u).content) for u in first}
    assert len(sizes) == 1  # both images of a trial the same byte size
    headers = [client.get(u).headers for u in first]
    assert dict(headers[0]) == dict(headers[1])
    assert headers[0]["cache-control"] == "no-store"
    state = answer(client, state)
    for url in first:  # the answered trial: gone for good
        assert client.get(url).status_code == 404
    assert client.get(state["trial"]["images"][0]).status_code == 200


def test_images_are_served_only_within_the_exposure(make_client, backend):
    edit_manifest(backend[0], exposure_ms=500)
    client = make_client()
    service = client.app.app.state.service
    now = [1_000_000.0]
    service.clock = lambda: now[0]
    state = join(client)
    one, two = state["trial"]["images"]
    assert client.get(one).status_code == 200  # the exposure starts with the first request
    now[0] += 0.5 + LOAD_ALLOWANCE_S - 0.01
    assert client.get(two).status_code == 200
    assert client.get(one).status_code == 200  # a reload while loading is fine
    now[0] += 0.02
    gone = client.get(one)
    assert gone.status_code == 410 and gone.text == "the photos of this trial were shown already"
    assert client.get(two).status_code == 410
    # The answer is still taken (from memory); the next trial's clock starts afresh.
    state = answer(client, state)
    assert client.get(state["trial"]["images"][0]).status_code == 200


# --- headers, organiser sessions ------------------------------------------------------------------
def test_pages_carry_csp_and_frame_options(make_client):
    client = make_client()
    for path in ("/", "/join", "/organiser/login"):
        headers = client.get(path).headers
        assert headers["x-frame-options"] == "DENY"
        csp = headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe-inline" not in csp
    page = client.get(f"/p/{join(client)['token']}").text
    assert "style=" not in page and "<script>" not in page  # nothing inline for the CSP to block


def test_refused_bodies_carry_the_security_headers_too(make_client):
    client = make_client()
    json_type = {"content-type": "application/json"}
    too_large = client.post("/api/join", content=b"x" * 17_000, headers=json_type)
    bad_length = client.post(
        "/api/join", content=b"{}", headers={**json_type, "content-length": "x"}
    )
    for response, status, message in (
        (too_large, 413, "request body too large"),
        (bad_length, 400, "bad Content-Length"),
    ):
        assert response.status_code == status and response.text == message
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_organiser_cookie_is_a_session_with_expiry_secure_over_tls_and_logout(make_client, scheme):
    client = make_client(base_url=f"{scheme}://testserver")
    login = client.post("/organiser/login", data={"token": TOKEN}, follow_redirects=False)
    assert login.status_code == 303
    cookie = login.headers["set-cookie"]
    session = re.search(r"study_organiser=([^;]+)", cookie).group(1)
    assert TOKEN not in cookie and len(session) >= 40
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=28800" in cookie
    assert ("Secure" in cookie) == (scheme == "https")
    client.cookies.set("study_organiser", session)
    assert client.get("/organiser").status_code == 200
    out = client.post("/organiser/logout", follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/organiser/login"
    client.cookies.set("study_organiser", session)  # the old cookie, kept by an attacker
    assert client.get("/organiser").status_code == 401
    client.cookies.set("study_organiser", TOKEN)  # the token itself is no cookie
    assert client.get("/organiser").status_code == 401


def test_organiser_sessions_expire(make_client):
    client = make_client(base_url="https://testserver")
    service = client.app.app.state.service
    now = [1_000_000.0]
    service.clock = lambda: now[0]
    client.post("/organiser/login", data={"token": TOKEN}, follow_redirects=False)
    assert client.get("/organiser").status_code == 200
    now[0] += 8 * 3600 + 1
    assert client.get("/organiser").status_code == 401


# --- exports, replays, chart ----------------------------------------------------------------------
def test_csv_exports_neutralise_spreadsheet_formulas(make_client, backend, tmp_path):
    client = make_client()
    state = join(client)
    answer(client, state)
    db = Database(backend[1])
    try:
        with db.write() as session, session.begin():
            session.execute(update(Trial).values(photo="\r=1+1.png"))
    finally:
        db.dispose()
    text = client.get("/organiser/responses.csv", headers=AUTH).text
    assert '"\'\r=1+1.png"' in text  # quoted: the line break stays in its cell
    assert "\n=1+1" not in text and "\r=1+1" not in text.replace("'\r=1+1", "")
    exported = pd.read_csv(io.StringIO(text))
    assert len(exported) == 1 and exported["photo"].tolist() == ["'\r=1+1.png"]


def test_a_replayed_answer_form_goes_on_instead_of_saying_not_stored(make_client):
    client = make_client()
    state = join(client)
    link = f"/p/{state['token']}"
    form = {"trial": state["trial"]["id"], "answer": "left", "key": uuid.uuid4().hex}
    first = client.post(f"{link}/answer", data=form, follow_redirects=False)
    assert first.status_code == 303  # practice: to the feedback page
    replay = client.post(f"{link}/answer", data=form, follow_redirects=False)
    assert replay.status_code == 303 and replay.headers["location"] == first.headers["location"]
    assert "Answer not stored" not in client.get(replay.headers["location"]).text
    state = answer(client, client.get(f"/api{link}").json())  # second practice trial
    test_form = {"trial": state["trial"]["id"], "answer": "left", "key": uuid.uuid4().hex}
    assert client.post(f"{link}/answer", data=test_form, follow_redirects=False).status_code == 303
    again = client.post(f"{link}/answer", data=test_form, follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == link
    other = client.post(f"{link}/answer", data={**test_form, "key": uuid.uuid4().hex})
    assert other.status_code == 409 and "already answered" in other.text


def test_chart_axis_counts_judgements(monkeypatch, make_client):
    import matplotlib.pyplot as plt

    labels = []
    close = plt.close
    monkeypatch.setattr(
        plt, "close", lambda fig: (labels.append(fig.axes[0].get_ylabel()), close(fig))
    )
    client = make_client()
    assert client.get("/organiser/chart.png", headers=AUTH).status_code == 200
    assert labels == ["judgements fooled (%)"]


# --- joins ----------------------------------------------------------------------------------------
def test_joins_are_rate_limited_per_client_with_retry_after(make_client):
    client = make_client(joins_per_minute=2)
    assert client.post("/api/join", json={"consent": True}).status_code == 201
    assert client.post("/join", data={"consent": "yes"}, follow_redirects=False).status_code == 303
    refused = client.post("/api/join", json={"consent": True})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) == 30
    assert refused.json()["error"].startswith("Too many sign-ups from your network")
    page = client.post("/join", data={"consent": "yes"}, follow_redirects=False)
    assert page.status_code == 429 and page.headers["retry-after"] == "30"
    assert (
        client.get("/organiser/summary.json", headers=AUTH).json()["participation"]["participants"]
        == 2
    )


def test_join_limit_refills_and_keeps_clients_apart(make_client):
    client = make_client()
    service = client.app.app.state.service
    now = [1000.0]
    limiter = JoinLimiter(service.db, service.study_id, 6, burst=2, clock=lambda: now[0])
    assert [limiter.retry_after("a") for _ in range(3)] == [0, 0, 10]  # one every 10 s
    assert limiter.retry_after("b") == 0  # another address is not held up
    now[0] += 5
    assert limiter.retry_after("a") == 5
    now[0] += 5
    assert limiter.retry_after("a") == 0
    now[0] += 1000
    limiter._next_sweep = 0.0
    limiter.retry_after("c")  # the sweep forgets clients whose allowance is full again
    with service.db.read() as session:
        assert session.scalars(select(JoinAllowance.client)).all() == ["c"]


def test_the_join_limit_holds_across_server_processes(make_client):
    """Two apps on one database (two processes): one client gets its burst once, not twice."""
    first, second = make_client(joins_per_minute=4), make_client(joins_per_minute=4)
    statuses = [
        (first if i % 2 else second).post("/api/join", json={"consent": True}).status_code
        for i in range(8)
    ]
    assert statuses == [201] * 4 + [429] * 4


def test_invitation_only_study_refuses_sign_ups_but_takes_invitations(make_client, backend):
    edit_manifest(backend[0], open_signup=False)
    client = make_client()
    assert client.get("/join").status_code == 404
    assert "This study is by invitation only." in client.get("/join").text
    assert client.post("/join", data={"consent": "yes"}).status_code == 404
    refused = client.post("/api/join", json={"consent": True})
    assert refused.status_code == 403 and refused.json() == {
        "error": "this study is by invitation only"
    }
    created = client.post("/organiser/invites", data={"count": 1}, headers=AUTH)
    token = re.search(r"/p/([A-Za-z0-9_-]+)", created.text).group(1)
    consented = client.post(f"/api/p/{token}/consent", json={"consent": True})
    assert consented.status_code == 200 and consented.json()["trial"]["number"] == 1


def test_a_retried_join_with_the_same_key_is_the_same_participant(make_client):
    client = make_client()
    key = uuid.uuid4().hex
    first = client.post("/api/join", json={"consent": True, "key": key})
    again = client.post("/api/join", json={"consent": True, "key": key})
    assert first.status_code == 201 and again.status_code == 200
    assert first.json()["token"] == again.json()["token"]
    bad = client.post("/api/join", json={"consent": True, "key": "no spaces!"})
    assert bad.status_code == 422
    assert bad.json()["error"] == "the join key must be 8-64 letters, digits, - or _"
    form_key = uuid.uuid4().hex
    one = client.post("/join", data={"consent": "yes", "key": form_key}, follow_redirects=False)
    two = client.post("/join", data={"consent": "yes", "key": form_key}, follow_redirects=False)
    assert one.headers["location"] == two.headers["location"]
    counts = client.get("/organiser/summary.json", headers=AUTH).json()["participation"]
    assert counts["participants"] == 2


def trials_of(backend) -> int:
    db = Database(backend[1])
    try:
        with db.read() as session:
            return session.scalar(select(func.count()).select_from(Trial))
    finally:
        db.dispose()


def test_a_second_visit_with_the_same_worker_id_resumes_the_same_session(make_client, backend):
    client = make_client()
    first = client.post("/api/join?PROLIFIC_PID=5f3a9c", json={"consent": True})
    assert first.status_code == 201
    answer(client, first.json())
    planned_trials = trials_of(backend)
    again = client.post("/api/join?PROLIFIC_PID=5f3a9c", json={"consent": True})
    assert again.status_code == 200 and again.json()["token"] == first.json()["token"]
    assert again.json()["answered"] == 1  # where they left off
    assert trials_of(backend) == planned_trials  # no new trials drawn
    # MTurk's parameter, and the join page: the id travels in the consent form.
    form = client.get("/join?workerId=A1B2C3")
    assert '<input type="hidden" name="worker" value="A1B2C3">' in form.text
    joined = client.post(
        "/join", data={"consent": "yes", "worker": "A1B2C3"}, follow_redirects=False
    )
    rejoined = client.post(
        "/join", data={"consent": "yes", "worker": "A1B2C3"}, follow_redirects=False
    )
    assert joined.status_code == rejoined.status_code == 303
    assert joined.headers["location"] == rejoined.headers["location"]
    assert trials_of(backend) == 2 * planned_trials
    bad = client.post("/api/join?PROLIFIC_PID=a%20b", json={"consent": True})
    assert bad.status_code == 422 and bad.json() == {
        "error": "the participant id from the recruitment platform must be 1-128 letters, "
        "digits or - _ . : @"
    }


def test_a_study_can_require_a_worker_id_under_its_own_parameter_name(make_client, backend):
    edit_manifest(backend[0], worker_id_params=["participant"], require_worker_id=True)
    client = make_client()
    message = (
        "This study takes part through a recruitment platform: please open it from the link the "
        "platform gave you (it carries your participant id)."
    )
    refused = client.post("/api/join", json={"consent": True})
    assert refused.status_code == 400 and refused.json() == {"error": message}
    page = client.get("/join?PROLIFIC_PID=x1")  # not this study's parameter
    assert page.status_code == 400 and message in page.text
    assert client.post("/join", data={"consent": "yes"}).status_code == 400
    assert client.post("/api/join?participant=p-17", json={"consent": True}).status_code == 201
    assert client.post("/api/join?participant=p-17", json={"consent": True}).status_code == 200
    assert client.post("/api/join", json={"consent": True, "worker": "p-18"}).status_code == 201


def planned(db):
    with db.read() as session:
        return {
            (p, c): n
            for p, c, n in session.execute(
                select(CellCount.photo, CellCount.condition, CellCount.planned)
            )
        }


def test_abandoned_participants_release_their_cells_and_can_still_finish(make_client, backend):
    client = make_client(release_after_s=600)
    service = client.app.app.state.service
    now = [1_000_000.0]
    service.clock = lambda: now[0]
    db = Database(backend[1])
    try:
        quitter = join(client)
        quitter = answer(client, answer(client, answer(client, quitter)))  # 2 practice, 1 test
        held = planned(db)
        assert sum(held.values()) == 6
        now[0] += 601
        assert service.release_abandoned() == 1
        assert sum(planned(db).values()) == 1  # only the answered test trial still counts
        counts = client.get("/organiser/summary.json", headers=AUTH).json()["participation"]
        assert counts["abandoned"] == 1 and counts["participants"] == 1
        # Back after all: the remaining trials count again, and the answer is stored.
        quitter = answer(client, quitter)
        assert planned(db) == held
        while not quitter["done"]:
            quitter = answer(client, quitter)
        assert client.get("/organiser/summary.json", headers=AUTH).json()["participation"] == {
            "participants": 1,
            "consented": 1,
            "finished": 1,
            "abandoned": 0,
            "answers": 8,
        }
        now[0] += 10_000
        assert service.release_abandoned() == 0  # finished people are never released
    finally:
        db.dispose()


def test_a_join_reads_the_cell_counters_not_every_trial(make_client, backend):
    client = make_client()
    for _ in range(5):
        join(client)
    engine = client.app.app.state.service.db.engine
    statements = []
    listener = lambda conn, cursor, statement, *rest: statements.append(statement)  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        join(client)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    reads_of_trials = [
        s for s in statements if re.search(r"FROM trials(?! WHERE trials.public_id)", s)
    ]
    assert not [s for s in reads_of_trials if "GROUP BY" in s or "count(" in s.lower()]
    assert any("cell_counts" in s for s in statements)
    db = Database(backend[1])
    try:  # the counters agree with the planned trials
        with db.read() as session:
            counted = dict(
                session.execute(
                    text(
                        "SELECT photo || '|' || condition, count(*) FROM trials "
                        "WHERE phase = 'test' GROUP BY photo, condition"
                    )
                ).all()
            )
        assert {f"{p}|{c}": n for (p, c), n in planned(db).items() if n} == counted
    finally:
        db.dispose()


# --- report ---------------------------------------------------------------------------------------
def test_the_organiser_report_is_computed_once_per_state_of_the_answers(make_client, monkeypatch):
    import study.report

    calls = []
    real = study.report.report_from_db
    monkeypatch.setattr(
        study.report, "report_from_db", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    client = make_client()
    state = answer(client, join(client))
    for path in ("/organiser", "/organiser/chart.png", "/organiser/summary.json"):
        assert client.get(path, headers=AUTH).status_code == 200
    assert len(calls) == 1
    answer(client, state)
    client.get("/organiser/chart.png", headers=AUTH)
    assert len(calls) == 2


def test_report_stops_when_the_database_lacks_the_study(template, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    folder = tmp_path / "S"
    shutil.copytree(template, folder)
    empty = f"sqlite:///{tmp_path}/empty.sqlite"
    assert main(["report", str(folder), "--database-url", empty]) == 2
    err = capsys.readouterr().err
    assert f"the database {empty} holds no study 'S'" in err and "--database-url" in err
    (folder / "database.json").write_text(
        json.dumps({"url": "postgresql+psycopg://study:***@db.example/study"})
    )
    assert main(["report", str(folder)]) == 2
    assert (
        "this study's answers are in postgresql+psycopg://study:***@db.example/study; "
        "give its password: set DATABASE_URL or pass --database-url"
    ) in capsys.readouterr().err


def test_report_states_the_attention_checks_chance_pass_rate(template, capsys, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["report", str(template), "--reps", "10", "--out", str(template / "r")]) == 0
    # One sentinel of six test trials, 75 % needed: a random clicker passes half the time.
    assert (
        "attention check: 1 sentinels per participant, 1 correct needed; a random clicker "
        "passes 50.0% of the time"
    ) in capsys.readouterr().out


# --- prepare --------------------------------------------------------------------------------------
def test_prepare_refuses_too_few_photos_and_says_how_many(tmp_path, capsys):
    photos = make_photos(tmp_path / "p", 5)
    args = ["prepare", "--images", str(photos), "--models", "gray", "--out", str(tmp_path / "o")]
    assert main([*args, "--trials", "6", "--practice", "2", "--sentinel-rate", "0"]) == 2
    assert (
        "6 test + 2 practice trials show each participant 8 photos, each once: "
        f"{photos} has 5 colour photos. Add 3 more, lower --trials to 3 (or --practice), "
        "or pass --allow-repeats"
    ) in capsys.readouterr().err
    assert not (tmp_path / "o" / "study.json").exists()
    assert main([*args, "--trials", "6", "--practice", "2", "--sentinel-rate", "0.1"]) == 2
    assert "too few for an attention check a random clicker passes at most 5 %" in (
        capsys.readouterr().err
    )
    repeat = [*args, "--trials", "6", "--sentinel-rate", "0", "--allow-repeats"]
    assert main(repeat) == 0
    assert read_manifest(tmp_path / "o").allow_repeats


def test_prepare_records_the_worker_id_settings(tmp_path):
    photos = make_photos(tmp_path / "p", 6)
    args = ["prepare", "--images", str(photos), "--models", "gray", "--trials", "4"]
    args += ["--sentinel-rate", "0", "--out", str(tmp_path / "o")]
    assert main([*args, "--worker-id-param", "pid, uid", "--require-worker-id"]) == 0
    manifest = read_manifest(tmp_path / "o")
    assert manifest.worker_id_params == ["pid", "uid"] and manifest.require_worker_id
    assert main([*args[:-1], str(tmp_path / "d")]) == 0
    defaults = read_manifest(tmp_path / "d")
    assert defaults.worker_id_params == ["PROLIFIC_PID", "workerId"]
    assert not defaults.require_worker_id


def test_prepare_warns_about_photos_of_public_benchmark_sets(tmp_path, capsys):
    photos = make_photos(tmp_path / "p", 6)
    (photos / "photo000.png").rename(photos / "kodim01.png")
    (photos / "photo001.png").rename(photos / "n01440764.png")
    args = ["prepare", "--images", str(photos), "--models", "gray", "--trials", "4"]
    assert main([*args, "--sentinel-rate", "0", "--out", str(tmp_path / "o")]) == 0
    assert (
        "warning: 2 of 6 photos look like photos of public benchmark sets (Kodak24: kodim01; "
        "ImageNet: n01440764). A participant who looks up the published file knows which "
        "image is the original without judging colour; photos of your own that were never "
        "published make a sounder study."
    ) in capsys.readouterr().err


def test_a_resized_public_photo_is_recognised_under_another_name(shared_data):
    from study.public_sets import public_set_of

    photo = Image.open(shared_data / "eval" / "kodak24" / "kodim05.png").convert("RGB")
    photo.thumbnail((300, 300))
    buffer = io.BytesIO()
    photo.save(buffer, format="JPEG", quality=70)
    assert public_set_of("holiday", np.asarray(Image.open(buffer))) == "Kodak24"
    assert public_set_of("holiday", np.asarray(make_photos_array())) is None


def make_photos_array():
    y, x = np.mgrid[0:48, 0:64]
    return np.stack([x * 4 % 256, y * 5 % 256, (x + y) * 3 % 256], -1).astype(np.uint8)


def test_prepare_keeps_kodim17_and_rejects_gray_and_sepia(shared_data):
    kodim17 = shared_data / "eval" / "kodak24" / "kodim17.png"
    if not kodim17.is_file():
        pytest.skip("kodim17.png is not in the evaluation data")
    rgb = np.asarray(Image.open(kodim17).convert("RGB"))
    assert has_real_color(rgb)  # gold leaves on green: little spread, two hues
    gray = rgb.mean(axis=2, keepdims=True)
    sepia_matrix = np.array([[0.393, 0.769, 0.189], [0.349, 0.686, 0.168], [0.272, 0.534, 0.131]])
    for fake in (
        np.repeat(gray, 3, axis=2),
        np.clip(rgb @ sepia_matrix.T, 0, 255),
        gray * np.array([1.0, 0.85, 0.6]),
        gray * np.array([0.8, 0.9, 1.0]),
    ):
        assert not has_real_color(fake.astype(np.uint8))


def test_each_participant_sees_each_photo_once_on_the_server(make_client, backend):
    client = make_client()
    for _ in range(4):
        join(client)
    db = Database(backend[1])
    try:
        with db.read() as session:
            rows = session.execute(select(Trial.participant_id, Trial.photo)).all()
            people = session.scalars(select(Participant.id)).all()
    finally:
        db.dispose()
    for person in people:
        photos = [p for pid, p in rows if pid == person]
        assert len(photos) == len(set(photos)) == PHOTOS


@pytest.mark.postgres
def test_report_after_a_postgres_run_follows_the_folder_and_matches_sqlite(
    template, tmp_path, capsys, monkeypatch
):
    """The same participants giving the same answers on SQLite and on PostgreSQL (a seeded
    allocation); then `report` without DATABASE_URL: each folder's own database, same rates."""
    pg = os.environ.get("DATABASE_URL_TEST")
    if not pg:
        pytest.skip("DATABASE_URL_TEST is not set (CI sets it to its PostgreSQL server)")
    from study.simulate import postgres_schema

    def run(folder, url):
        app = create_app(folder, organiser_token=TOKEN, database_url=url, seed=11)
        try:
            with TestClient(app) as client:
                for person in range(6):
                    state = join(client)
                    while not state["done"]:
                        choice = "left" if (person + state["answered"]) % 3 else "right"
                        state = answer(client, state, choice)
        finally:
            app.app.state.service.db.dispose()

    monkeypatch.delenv("DATABASE_URL", raising=False)
    tables = {}
    with postgres_schema(pg) as scoped:
        for name, url in (("sqlite", None), ("postgres", scoped)):
            folder = tmp_path / name
            shutil.copytree(template, folder)
            run(folder, url or f"sqlite:///{folder}/study.sqlite")
            assert main(["report", str(folder), "--reps", "200"]) == 0
            tables[name] = pd.read_csv(folder / "report" / "acceptance.csv")
            assert "attention check" in capsys.readouterr().out
    assert json.loads((tmp_path / "postgres" / "database.json").read_text())["url"].startswith(
        "postgresql+psycopg://"
    )
    assert tables["postgres"]["n"].sum() > 0
    pd.testing.assert_frame_equal(tables["sqlite"], tables["postgres"])


def test_a_study_database_from_before_the_counters_is_upgraded_and_keeps_its_answers(
    template, tmp_path
):
    """Tables of an older version (no counters, join keys, activity or exposure columns): the
    server adds them, counts the existing trials into the counters, and goes on."""
    folder = tmp_path / "S"
    shutil.copytree(template, folder)
    url = f"sqlite:///{folder}/study.sqlite"
    app = create_app(folder, organiser_token=TOKEN, database_url=url)
    with TestClient(app) as client:
        answer(client, join(client))
    app.app.state.service.db.dispose()
    db = Database(url, create=False)
    with db.engine.begin() as connection:
        for statement in (
            "DROP INDEX ix_participants_join_key",
            "DROP INDEX ix_participants_active_at",
            "ALTER TABLE participants DROP COLUMN join_key",
            "ALTER TABLE participants DROP COLUMN active_at",
            "ALTER TABLE participants DROP COLUMN released_at",
            "ALTER TABLE trials DROP COLUMN shown_at",
            "DROP TABLE cell_counts",
            "DROP TABLE model_counts",
            "DROP TABLE organiser_sessions",
        ):
            connection.execute(text(statement))
    db.dispose()
    app = create_app(folder, organiser_token=TOKEN, database_url=url)
    db = Database(url)
    try:
        with TestClient(app) as client:
            assert sum(planned(db).values()) == 6  # the first participant's test trials
            state = join(client, key=uuid.uuid4().hex)
            assert answer(client, state)["answered"] == 1
            counts = client.get("/organiser/summary.json", headers=AUTH).json()["participation"]
            assert counts["participants"] == 2 and counts["answers"] == 2
        assert sum(planned(db).values()) == 12
    finally:
        db.dispose()
        app.app.state.service.db.dispose()
