"""Load and fault tests against a real `python -m study serve` process on 127.0.0.1.

50 simulated participants x 40 trials (2 practice + 38 test) over HTTP, concurrently: every
answer stored exactly once, none lost, no error response. Then the same run with the server
SIGKILLed in the middle and restarted: every acknowledged answer is in the database and every
participant resumes where the server says they are. SQLite (WAL) always; PostgreSQL when
DATABASE_URL_TEST is set.
"""

import time

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from study.db import Database, Participant, Response, Trial
from study.loadtest import ServerProcess, simulate
from study.prepare import prepare_study

TOKEN = "organiser-secret-token"
PARTICIPANTS, TRIALS = 50, 40


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("load")
    photos = root / "photos"
    photos.mkdir()
    y, x = np.mgrid[0:24, 0:32]
    for i in range(8):
        rgb = np.stack(
            [(x * 8 + 30 * i) % 256, (y * 9 + 50 * i) % 256, ((x + y) * 4 + 90 * i) % 256], -1
        )
        Image.fromarray(rgb.astype(np.uint8)).save(photos / f"p{i}.png")
    out = root / "S"
    prepare_study(
        photos,
        ["gray", "tint"],
        out,
        test_trials=TRIALS - 2,
        practice_trials=2,
        database_url=f"sqlite:///{out}/study.sqlite",
        progress=False,
        torch_threads=1,  # tiny images: one thread beats oversubscribed cores
    )
    return out


def stored_answers(url):
    """{(trial public id, submit key)} of every stored answer, and per-participant progress."""
    db = Database(url)
    try:
        with db.read() as session:
            answers = session.execute(
                select(Trial.public_id, Response.submit_key).join(
                    Response, Response.trial_id == Trial.id
                )
            ).all()
            total = session.scalar(select(func.count()).select_from(Response))
            progress = session.execute(
                select(Participant.token, Participant.answered, Participant.finished_at)
            ).all()
    finally:
        db.dispose()
    return (
        {tuple(a) for a in answers},
        total,
        {token: (answered, finished) for token, answered, finished in progress},
    )


def check_all_stored_once(result, url):
    answers, total, progress = stored_answers(url)
    acknowledged = {a for p in result.participants for a in p.acknowledged + p.recovered}
    assert result.errors == []
    assert all(p.finished for p in result.participants)
    assert len(acknowledged) == result.acknowledged == PARTICIPANTS * TRIALS
    assert total == len(answers) == PARTICIPANTS * TRIALS  # exactly once: no duplicates
    assert acknowledged <= answers  # none lost
    for p in result.participants:
        answered, finished = progress[p.token]
        assert answered == TRIALS and finished is not None


def test_load_50_participants_40_trials(backend):
    folder, url = backend
    with ServerProcess(folder, TOKEN, database_url=url) as server:
        result = simulate(server.url, PARTICIPANTS, timeout=180)
    check_all_stored_once(result, url)
    assert result.connection_failures == 0
    print(
        f"\nload ({url.split(':')[0]}): {result.acknowledged} answers from {PARTICIPANTS} participants in {result.seconds:.1f} s, 0 errors"
    )


def test_sigkill_mid_run_loses_no_acknowledged_answer_and_participants_resume(backend):
    folder, url = backend
    server = ServerProcess(folder, TOKEN, database_url=url).start()
    killed = {}

    def crash_and_restart(run):
        deadline = time.monotonic() + 120
        while run.acked < PARTICIPANTS * TRIALS // 3:
            if time.monotonic() > deadline:  # the run stalled: leave the server up, fail below
                return
            time.sleep(0.01)
        server.kill()
        killed["acked"] = run.acked
        started = time.perf_counter()
        server.start()
        killed["restart_s"] = time.perf_counter() - started

    try:
        result = simulate(server.url, PARTICIPANTS, timeout=180, during=crash_and_restart)
    finally:
        server.stop()
    assert 0 < killed.get("acked", 0) < PARTICIPANTS * TRIALS  # the kill really was mid-run
    assert result.connection_failures > 0
    check_all_stored_once(result, url)
    resumed = [p for p in result.participants if p.resumed_at]
    assert resumed  # participants cut off by the crash picked up where the server had them
    for p in resumed:
        for acked, answered in p.resumed_at:
            assert answered in (acked, acked + 1)
    recovered = sum(len(p.recovered) for p in result.participants)
    print(
        f"\nfault ({url.split(':')[0]}): SIGKILL after {killed['acked']} acknowledged answers, restart "
        f"{killed['restart_s']:.1f} s, {result.connection_failures} dropped requests, {len(resumed)} "
        f"participants resumed, {recovered} answers committed before the crash but acknowledged "
        f"after it; {result.acknowledged} stored exactly once in {result.seconds:.1f} s"
    )
