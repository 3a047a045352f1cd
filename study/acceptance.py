"""The study's acceptance checks, as code the test suite and ``python -m study.loadtest`` share.

- :func:`audit_images`: walk participants through a served study fetching every image as a
  browser would, and record what an observer could compare without looking at colours: byte
  size, content digest, headers, PNG chunk layout, response time. :func:`score_rules` then plays
  the two cheats an audit found ("the smaller file is fake", "the one seen before is the
  original") and a timing one ("the slower is fake") against the truth in the database; each
  must score at chance.
- :func:`stored_once` and :func:`cell_balance`: nothing acknowledged is lost or stored twice, and
  every (photo, condition) cell got within one judgement of the others.
- :func:`run_acceptance`: all of it on a study prepared for the purpose (SQLite, a join flood,
  and two server processes on one PostgreSQL database when a URL is given).
"""

from __future__ import annotations

import hashlib
import random
import shutil
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np
from PIL import Image
from sqlalchemy import func, select

from .audit import png_layout
from .db import Database, Response, Study, Trial
from .simulate import (
    HttpClient,
    LoadResult,
    ServerProcess,
    client_address,
    flood_joins,
    postgres_schema,
    simulate,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

TOKEN = "acceptance-organiser-token"
IGNORED_HEADERS = {"date"}  # the clock, the same for both images up to a second


@dataclass
class ImagePair:
    """What an observer sees of one trial's two images (2AFC)."""

    participant: int
    trial: str
    sizes: tuple[int, int]
    digests: tuple[str, str]
    headers_equal: bool
    layout_equal: bool
    seconds: tuple[float, float]
    answered_reachable: bool = False  # could this trial's image be fetched after answering?


def _fetch(http: HttpClient, path: str) -> tuple[int, bytes, dict, float]:
    started = time.perf_counter()
    status, body = http.raw("GET", path)
    elapsed = time.perf_counter() - started
    headers = {k: v for k, v in http.last_headers.items() if k not in IGNORED_HEADERS}
    return status, body, headers, elapsed


def audit_images(base_url: str, participants: int, *, seed: int = 0) -> list[ImagePair]:
    """Join ``participants`` people one after the other and fetch both images of every trial
    (2AFC studies), answering at random in between; after each answer, try the answered
    trial's image again."""
    server = urlsplit(base_url)
    rng = random.Random(seed)
    pairs: list[ImagePair] = []
    for index in range(participants):
        http = HttpClient(server.hostname, server.port or 80, 30.0, client_address(3, index))
        try:
            status, state = http.request("POST", "/api/join", {"consent": True})
            if status != 201:
                raise RuntimeError(f"join: {status} {state}")
            while not state["done"]:
                trial = state["trial"]
                fetched = [_fetch(http, path) for path in trial["images"]]
                if [f[0] for f in fetched] != [200, 200]:
                    raise RuntimeError(f"images: {[f[0] for f in fetched]}")
                (_, one, h1, t1), (_, two, h2, t2) = fetched
                body = {"trial": trial["id"], "answer": rng.choice(("left", "right"))}
                body["key"] = uuid.uuid4().hex
                status, state = http.request("POST", f"/api/p/{state['token']}/answer", body)
                if status != 200:
                    raise RuntimeError(f"answer: {status} {state}")
                again, _ = http.raw("GET", trial["images"][0])
                pairs.append(
                    ImagePair(
                        index,
                        trial["id"],
                        (len(one), len(two)),
                        (hashlib.sha256(one).hexdigest(), hashlib.sha256(two).hexdigest()),
                        h1 == h2,
                        png_layout(one) == png_layout(two),
                        (t1, t2),
                        again == 200,
                    )
                )
        finally:
            http.close()
    return pairs


def score_rules(pairs: list[ImagePair], truth: dict[str, str]) -> dict[str, tuple[int, int, int]]:
    """{rule: (correct, decided, trials)} for the cheats, against ``truth`` (trial -> fake side).

    A rule that cannot tell (equal sizes, nothing seen before) answers "left", as a cheat would
    have to answer something; the fake side is balanced within each participant, so with no
    information a rule scores 50 %. ``decided`` counts the trials where the rule had a clue.
    """
    scores: dict[str, list[int]] = {r: [0, 0, 0] for r in ("smaller", "seen_before", "slower")}
    seen: dict[int, set[str]] = defaultdict(set)
    for pair in pairs:
        fake = truth[pair.trial]
        guesses = {}
        a, b = pair.sizes
        guesses["smaller"] = None if a == b else ("left" if a < b else "right")
        one, two = (d in seen[pair.participant] for d in pair.digests)
        guesses["seen_before"] = None if one == two else ("right" if one else "left")
        t1, t2 = pair.seconds
        guesses["slower"] = None if t1 == t2 else ("left" if t1 > t2 else "right")
        seen[pair.participant].update(pair.digests)
        for rule, guess in guesses.items():
            scores[rule][0] += (guess or "left") == fake
            scores[rule][1] += guess is not None
            scores[rule][2] += 1
    return {rule: tuple(values) for rule, values in scores.items()}


def truth_from_db(url: str) -> dict[str, str]:
    db = Database(url, create=False)
    try:
        with db.read() as session:
            return dict(session.execute(select(Trial.public_id, Trial.fake_side)).all())
    finally:
        db.dispose()


def stored_answer_keys(session: Session) -> list[tuple[str, str]]:
    """(trial public id, submit key) of every stored answer, duplicates included."""
    query = select(Trial.public_id, Response.submit_key)
    return [
        tuple(row) for row in session.execute(query.join(Response, Response.trial_id == Trial.id))
    ]


def stored_once(result: LoadResult, url: str) -> dict[str, int]:
    """acknowledged / stored / lost (acknowledged, not in the database) / duplicated."""
    db = Database(url, create=False)
    try:
        with db.read() as session:
            rows = stored_answer_keys(session)
            per_trial = session.execute(
                select(func.count()).select_from(Response).group_by(Response.trial_id)
            ).all()
    finally:
        db.dispose()
    stored = set(rows)
    acknowledged = {a for p in result.participants for a in p.acknowledged + p.recovered}
    return {
        "acknowledged": len(acknowledged),
        "stored": len(rows),
        "lost": len(acknowledged - stored),
        "duplicated": sum(n - 1 for (n,) in per_trial if n > 1),
    }


def cell_balance(url: str) -> dict[str, tuple[int, int]]:
    """(fewest, most) test judgements per (photo, condition) cell among the models' cells, and
    among the sentinels, counted from the stored answers."""
    db = Database(url, create=False)
    try:
        with db.read() as session:
            study = session.scalars(select(Study)).one()
            rows = session.execute(
                select(Trial.photo, Trial.condition, func.count())
                .join(Response, Response.trial_id == Trial.id)
                .where(Trial.phase == "test")
                .group_by(Trial.photo, Trial.condition)
            ).all()
    finally:
        db.dispose()
    counts = {(p, c): n for p, c, n in rows}
    photos, models = study.settings["photos"], study.settings["models"]
    measured = [counts.get((p, m), 0) for p in photos for m in models]
    sentinels = [counts.get((p, "sentinel"), 0) for p in photos]
    return {"models": (min(measured), max(measured)), "sentinels": (min(sentinels), max(sentinels))}


def make_photos(folder: Path, count: int, size: tuple[int, int] = (64, 48)) -> Path:
    """``count`` small, different, colourful test photos."""
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    for i in range(count):
        rgb = np.stack(
            [(x * 4 + 37 * i) % 256, (y * 5 + 61 * i) % 256, ((x + y) * 3 + 89 * i) % 256], -1
        )
        Image.fromarray(rgb.astype(np.uint8)).save(folder / f"photo{i:03d}.png")
    return folder


def prepare_template(root: Path, trials: int, practice: int = 2, **options) -> Path:
    """A 2AFC study of gray and tint with exactly as many photos as trials per participant;
    ``options`` go to :func:`~study.prepare.prepare_study` (sentinel settings and the like)."""
    from .prepare import prepare_study

    out = root / "template"
    prepare_study(
        make_photos(root / "photos", trials),
        ["gray", "tint"],
        out,
        test_trials=trials - practice,
        practice_trials=practice,
        database_url=sqlite_url(out),
        progress=False,
        torch_threads=1,  # tiny images: one thread beats oversubscribed cores
        **options,
    )
    return out


def sqlite_url(folder: Path) -> str:
    return f"sqlite:///{folder}/study.sqlite"


def _rules_line(scores: dict[str, tuple[int, int, int]]) -> tuple[str, bool]:
    parts, ok = [], True
    names = {"smaller": "smaller file is fake", "seen_before": "seen before is original"}
    names["slower"] = "slower response is fake"
    for rule, (correct, decided, trials) in scores.items():
        share = correct / trials * 100
        ok &= 45 <= share <= 55
        parts.append(f'"{names[rule]}" {share:.1f} % ({decided} of {trials} trials decided)')
    return "; ".join(parts), ok


def _leak_audit(template: Path, root: Path, participants: int) -> bool:
    folder = root / "audit"
    shutil.copytree(template, folder)
    with ServerProcess(folder, TOKEN, database_url=sqlite_url(folder)) as server:
        pairs = audit_images(server.url, participants)
    truth = truth_from_db(sqlite_url(folder))
    scores = score_rules(pairs, truth)
    same_size = sum(a == b for a, b in (p.sizes for p in pairs))
    same_headers = sum(p.headers_equal for p in pairs)
    same_layout = sum(p.layout_equal for p in pairs)
    reachable = sum(p.answered_reachable for p in pairs)
    shown: dict[int, list[str]] = defaultdict(list)
    for pair in pairs:
        shown[pair.participant] += pair.digests
    repeats = sum(len(d) - len(set(d)) for d in shown.values())
    fake_ms = [p.seconds[0 if truth[p.trial] == "left" else 1] * 1000 for p in pairs]
    real_ms = [p.seconds[1 if truth[p.trial] == "left" else 0] * 1000 for p in pairs]
    line, rules_ok = _rules_line(scores)
    print(
        f"leak audit: {len(pairs)} trials of {participants} participants; both images the same "
        f"byte size in {same_size}, same headers in {same_headers}, same PNG chunk layout in "
        f"{same_layout}; images repeated within a participant: {repeats}; answered trials' images "
        f"still served: {reachable}; median response {_median(real_ms):.2f} ms (original) vs "
        f"{_median(fake_ms):.2f} ms (colourised)\n  rules: {line}"
    )
    n = len(pairs)
    return (
        rules_ok
        and n >= 300
        and same_size == same_headers == same_layout == n
        and not (repeats or reachable)
    )


def _median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2] if values else float("nan")


def _load_line(label: str, result: LoadResult, checked: dict[str, int]) -> str:
    p50, p90, p99 = result.latency_ms(50, 90, 99)
    return (
        f"{label}: {checked['acknowledged']} answers acknowledged, {checked['stored']} stored, "
        f"{checked['lost']} lost, {checked['duplicated']} duplicated, {len(result.errors)} errors; "
        f"{result.participants_seconds:.1f} s; answer latency p50/p90/p99 "
        f"{p50:.0f}/{p90:.0f}/{p99:.0f} ms"
    )


def _load_ok(result: LoadResult, checked: dict[str, int], expected: int) -> bool:
    for error in result.errors[:5]:
        print("  error: " + error)
    return (
        not result.errors
        and checked["lost"] == checked["duplicated"] == 0
        and checked["acknowledged"] == expected
    )


def _sqlite_load(template: Path, root: Path, args) -> bool:
    ok = True
    expected = args.participants * args.trials
    floods = []

    def during(run, server_url) -> None:
        floods.append(flood_joins(server_url, args.flood_threads, args.flood_joins))

    for label, flood in (("alone", False), ("beside the join flood", True)):
        label = f"{args.participants}x{args.trials} {label}"
        folder = root / ("flood" if flood else "alone")
        shutil.copytree(template, folder)

        with ServerProcess(folder, TOKEN, database_url=sqlite_url(folder)) as server:
            result = simulate(
                server.url,
                args.participants,
                timeout=600,
                during=(lambda run: during(run, server.url)) if flood else None,
            )
        checked = stored_once(result, sqlite_url(folder))
        print(_load_line(f"SQLite, {label}", result, checked))
        ok &= _load_ok(result, checked, expected)
        if flood:
            f = floods[0]
            limited = f.statuses.get(429, 0)
            print(
                f"  flood: {args.flood_threads} clients x {args.flood_joins} joins in "
                f"{f.seconds:.1f} s: {f.statuses.get(201, 0)} admitted, {limited} refused with 429 "
                f"(Retry-After {', '.join(f'{k} s' for k in sorted(f.retry_after, key=str))}), "
                f"other: {dict((k, v) for k, v in f.statuses.items() if k not in (201, 429))}"
            )
            ok &= limited > 0 and "missing" not in f.retry_after
            ok &= result.latency_ms(99)[0] < 1000
    return ok


def _postgres_two_processes(template: Path, root: Path, args) -> bool:
    """The load split across two server processes on one PostgreSQL database."""
    folder = root / "postgres"
    shutil.copytree(template, folder)
    expected = args.participants * args.trials
    with postgres_schema(args.postgres) as url:
        first = ServerProcess(folder, TOKEN, database_url=url).start()  # creates the tables
        try:
            with ServerProcess(folder, TOKEN, database_url=url) as second:
                result = simulate([first.url, second.url], args.participants, timeout=600)
        finally:
            first.stop()
        checked = stored_once(result, url)
        balance = cell_balance(url)
    label = f"PostgreSQL, {args.participants}x{args.trials} across two server processes"
    print(_load_line(label, result, checked))
    low, high = balance["models"]
    print(
        f"  cells: {low}-{high} judgements per (photo, model) cell; sentinels "
        f"{balance['sentinels'][0]}-{balance['sentinels'][1]} per photo"
    )
    return _load_ok(result, checked, expected) and high - low <= 1


def run_acceptance(args) -> int:
    """``python -m study.loadtest`` without a URL: every check, 0 if all hold."""
    root = Path(tempfile.mkdtemp(prefix="study-acceptance-"))
    try:
        template = prepare_template(root, args.trials)
        results = {
            "leak audit": _leak_audit(template, root, args.audit_participants),
            "SQLite load": _sqlite_load(template, root, args),
        }
        if args.postgres:
            results["PostgreSQL two processes"] = _postgres_two_processes(template, root, args)
        else:
            print("PostgreSQL: skipped (give --postgres URL or set DATABASE_URL_TEST)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    failed = [name for name, ok in results.items() if not ok]
    print("all checks hold" if not failed else "FAILED: " + ", ".join(failed))
    return 1 if failed else 0
