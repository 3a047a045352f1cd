"""Load and fault tests against real `python -m study serve` processes on 127.0.0.1.

50 simulated participants x 40 trials (2 practice + 38 test) over HTTP, concurrently: every
answer stored exactly once, none lost, no error response. Then the same run with the server
SIGKILLed in the middle and restarted: every acknowledged answer is in the database and every
participant resumes where the server says they are. SQLite (WAL) always; PostgreSQL when
DATABASE_URL_TEST is set, including the load split across two server processes. Also: the image
leak audit (the cheats score at chance), and a join flood beside the participants. Speed figures
are printed, not asserted (python -m study.loadtest reports them at full size).
"""

import math
import os
import shutil
import time

import pytest
from sqlalchemy import func, select

from study.acceptance import (
    audit_images,
    cell_balance,
    prepare_template,
    score_rules,
    stored_answer_keys,
    stored_once,
    truth_from_db,
)
from study.db import Database, Participant, Response
from study.simulate import ServerProcess, flood_joins, postgres_schema, simulate

TOKEN = "organiser-secret-token"
PARTICIPANTS, TRIALS = 50, 40


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return prepare_template(tmp_path_factory.mktemp("load"), TRIALS)  # each photo once


def stored_answers(url):
    """{(trial public id, submit key)} of every stored answer, and per-participant progress."""
    db = Database(url)
    try:
        with db.read() as session:
            answers = stored_answer_keys(session)
            total = session.scalar(select(func.count()).select_from(Response))
            progress = session.execute(
                select(Participant.token, Participant.answered, Participant.finished_at)
            ).all()
    finally:
        db.dispose()
    return (
        set(answers),
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


def test_image_leak_audit_cheats_score_at_chance(template, tmp_path):
    folder = tmp_path / "S"
    shutil.copytree(template, folder)
    url = f"sqlite:///{folder}/study.sqlite"
    with ServerProcess(folder, TOKEN, database_url=url) as server:
        pairs = audit_images(server.url, 8)
    assert len(pairs) == 8 * TRIALS >= 300
    # Nothing to compare: same size, same headers, same PNG chunks; no photo twice; answered
    # trials' images no longer served.
    assert all(p.sizes[0] == p.sizes[1] for p in pairs)
    assert all(p.headers_equal and p.layout_equal for p in pairs)
    assert not any(p.answered_reachable for p in pairs)
    for person in range(8):
        shown = [d for p in pairs if p.participant == person for d in p.digests]
        assert len(shown) == len(set(shown))
    scores = score_rules(pairs, truth_from_db(url))
    for rule in ("smaller", "seen_before"):
        correct, decided, trials = scores[rule]
        assert decided == 0 and 0.45 <= correct / trials <= 0.55, (rule, scores[rule])
    # Response time: within noise of chance (3.5 standard errors: a false alarm 1 in 2,000 runs).
    correct, _, trials = scores["slower"]
    assert abs(correct / trials - 0.5) <= 3.5 * math.sqrt(0.25 / trials), scores["slower"]
    print(f"\nleak audit: {trials} trials, rules {scores}")


def test_join_flood_is_refused_with_retry_after_and_loses_nothing(template, tmp_path):
    folder = tmp_path / "S"
    shutil.copytree(template, folder)
    url = f"sqlite:///{folder}/study.sqlite"
    floods = []
    with ServerProcess(folder, TOKEN, database_url=url) as server:
        result = simulate(
            server.url,
            12,
            timeout=180,
            during=lambda run: floods.append(flood_joins(server.url, 2, 150)),
        )
    checked = stored_once(result, url)
    assert result.errors == [] and all(p.finished for p in result.participants)
    assert checked == {
        "acknowledged": 12 * TRIALS,
        "stored": 12 * TRIALS,
        "lost": 0,
        "duplicated": 0,
    }
    flood = floods[0]
    assert flood.statuses[201] + flood.statuses[429] == 300
    # 20 at once per client, then 20 a minute: the rest is refused, with a wait in whole seconds.
    assert 40 <= flood.statuses[201] <= 40 + math.ceil(flood.seconds / 3) * 2
    assert flood.retry_after and all(int(v) >= 1 for v in flood.retry_after)
    p50, p99 = result.latency_ms(50, 99)
    print(f"\nflood: {dict(flood.statuses)}; answer latency p50 {p50:.0f} ms, p99 {p99:.0f} ms")


@pytest.mark.postgres
def test_load_across_two_server_processes_on_postgres(template, tmp_path):
    url = os.environ.get("DATABASE_URL_TEST")
    if not url:
        pytest.skip("DATABASE_URL_TEST is not set (CI sets it to its PostgreSQL server)")
    folder = tmp_path / "S"
    shutil.copytree(template, folder)
    people = 20
    with postgres_schema(url) as scoped:
        first = ServerProcess(folder, TOKEN, database_url=scoped).start()
        try:
            with ServerProcess(folder, TOKEN, database_url=scoped) as second:
                result = simulate([first.url, second.url], people, timeout=180)
        finally:
            first.stop()
        checked = stored_once(result, scoped)
        balance = cell_balance(scoped)
    assert result.errors == []
    assert checked == {
        "acknowledged": people * TRIALS,
        "stored": people * TRIALS,
        "lost": 0,
        "duplicated": 0,
    }
    low, high = balance["models"]
    assert high - low <= 1, balance  # as in one process: the study row's lock, not a thread's
    print(f"\ntwo processes: {checked}, cells {balance}")
