"""What participants can do, as database transactions: join, consent, see a trial, answer.

The HTTP layer (server.py) only translates these results into pages and status codes. An answer
is accepted only for the participant's current trial; it is committed before it is acknowledged,
and the unique keys on ``responses`` make a second write of the same answer impossible.
"""

from __future__ import annotations

import hashlib
import random
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .db import (
    CellCount,
    Database,
    ModelCount,
    OrganiserSession,
    Participant,
    Response,
    Stimulus,
    Study,
    Trial,
)
from .design import (
    SENTINEL,
    answers_for,
    choose_model,
    conditions_for,
    judge,
    plan_trials,
)
from .manifest import Manifest, record_manifest

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
WORKER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:@-]{1,128}$")
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MAX_RT_MS = 24 * 3600 * 1000
RELEASE_AFTER_S = 30 * 60  # a participant silent this long is abandoned: their cells are freed
RELEASE_EVERY_S = 60.0  # look for abandoned participants at most this often (per process)
LOAD_ALLOWANCE_S = 5.0  # with an exposure limit: time allowed for the images to arrive
SESSION_TTL_S = 8 * 3600  # an organiser login lasts this long
P, T, R, C = Participant.__table__, Trial.__table__, Response.__table__, CellCount.__table__


# The hot statements, built once: building and cache-keying them per request costs more CPU
# than SQLite takes to run them.
_STATE = (
    select(P.c.answered, P.c.consented_at, T.c.public_id, T.c.phase)
    .select_from(P.outerjoin(T, (T.c.participant_id == P.c.id) & (T.c.position == P.c.answered)))
    .where(P.c.token == bindparam("token"), P.c.study_id == bindparam("study"))
)
_FOUND = (
    select(
        T.c.id,
        T.c.position,
        T.c.phase,
        T.c.condition,
        T.c.fake_side,
        P.c.id.label("participant_id"),
        P.c.answered,
        P.c.consented_at,
        P.c.released_at,
        R.c.submit_key,
    )
    .select_from(T.join(P, T.c.participant_id == P.c.id).outerjoin(R, R.c.trial_id == T.c.id))
    .where(
        T.c.public_id == bindparam("trial"),
        P.c.token == bindparam("token"),
        P.c.study_id == bindparam("study"),
    )
)
_INSERT = insert(R)
_ADVANCE = (
    update(P)
    .where(P.c.id == bindparam("pid"), P.c.answered == bindparam("seen"))
    .values(
        answered=bindparam("now_answered"),
        finished_at=bindparam("finished"),
        active_at=bindparam("active"),
    )
)
_PLAN_CELL = (
    update(C)
    .where(
        C.c.study_id == bindparam("study"),
        C.c.photo == bindparam("cell_photo"),
        C.c.condition == bindparam("cell_condition"),
    )
    .values(planned=C.c.planned + bindparam("delta"))
)
_IMAGE = (
    select(
        T.c.id,
        T.c.position,
        T.c.shown_at,
        P.c.answered,
        P.c.consented_at,
        T.c.left_id,
        T.c.right_id,
    )
    .select_from(T.join(P, T.c.participant_id == P.c.id))
    .where(
        T.c.public_id == bindparam("trial"),
        P.c.token == bindparam("token"),
        P.c.study_id == bindparam("study"),
    )
)
_AT_POSITION = select(T.c.public_id, T.c.phase).where(
    T.c.participant_id == bindparam("participant"), T.c.position == bindparam("position")
)


class _Conflict(Exception):
    """Raised inside a transaction to roll it back."""


class _Released(Exception):
    """The participant's cells were released; reclaim them, then store the answer."""

    def __init__(self, participant_id: int) -> None:
        self.participant_id = participant_id


@dataclass
class TrialView:
    """What a participant's page may know about a trial: nothing about which image is real."""

    public_id: str
    phase: str
    number: int  # 1-based position
    total: int
    slots: list[str]  # image slots to request: ["1"] or ["1", "2"]


@dataclass
class State:
    token: str
    consented: bool
    answered: int
    total: int
    trial: TrialView | None = None  # None when finished (or not consented)

    @property
    def done(self) -> bool:
        return self.consented and self.answered >= self.total


@dataclass
class SubmitResult:
    """``status``: stored | already_recorded (same key, replayed) | already_answered |
    not_current | unknown | invalid | key_reused | not_consented."""

    status: str
    message: str = ""
    correct: bool | None = None  # only revealed for practice trials
    fake_side: str | None = None
    condition_is_real: bool | None = None
    state: State | None = None  # after a stored answer: where the participant is now

    @property
    def ok(self) -> bool:
        return self.status == "stored"


@dataclass
class ImageResult:
    """``status``: ok | not_found (not this participant's current trial) | gone (exposure over)."""

    status: str
    media_id: str | None = None


class StudyService:
    """``seed`` fixes the allocation's random draws (tests); ``clock`` gives Unix time."""

    def __init__(
        self,
        db: Database,
        manifest: Manifest,
        *,
        seed: int | None = None,
        release_after_s: float = RELEASE_AFTER_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.manifest = manifest
        self.study_id = record_manifest(db, manifest)
        self.protocol = manifest.protocol
        self.answers = answers_for(manifest.protocol)
        self.total = manifest.test_trials + manifest.practice_trials
        self.sentinels = manifest.sentinels_per_participant
        self.release_after_s = release_after_s
        self.clock = clock
        self._next_release = 0.0
        # Correctness rests on the database (the study row's lock on PostgreSQL, BEGIN IMMEDIATE
        # on SQLite), so several processes may serve one study. In one SQLite process, threads
        # also queue here: cheaper than spinning in SQLite's busy handler.
        self._local_lock = threading.Lock() if db.url.startswith("sqlite") else nullcontext()
        self._rng = random.Random(secrets.randbits(64) if seed is None else seed)
        with db.read() as session:
            rows = session.execute(
                select(Stimulus.id, Stimulus.photo, Stimulus.condition, Stimulus.media_id).where(
                    Stimulus.study_id == self.study_id
                )
            ).all()
        self._stimulus = {(photo, condition): sid for sid, photo, condition, _ in rows}
        self._media = {sid: media_id for sid, _, _, media_id in rows}

    # --- participants -------------------------------------------------------------------------
    def create_participant(self, *, source: str, consented: bool, label: str | None = None) -> str:
        return self.join(source=source, consented=consented, label=label)[0]

    def join(
        self,
        *,
        source: str = "signup",
        consented: bool = True,
        label: str | None = None,
        key: str | None = None,
        worker_id: str | None = None,
    ) -> tuple[str, bool]:
        """(token, created). A join retried with the same client ``key`` (its reply was lost)
        returns the participant the first one created, instead of a second participant; so does
        a second visit with the same recruitment-platform ``worker_id``: it resumes that session
        and never draws new trials."""
        if key is not None and not KEY_PATTERN.match(key):
            raise ValueError("the join key must be 8-64 letters, digits, - or _")
        if worker_id is not None and not WORKER_ID_PATTERN.match(worker_id):
            raise ValueError(
                "the participant id from the recruitment platform must be 1-128 letters, "
                "digits or - _ . : @"
            )
        existing = self._joined_with(key, worker_id)
        if existing is not None:
            return existing, False
        token = secrets.token_urlsafe(18)
        try:
            with self._local_lock, self.db.write() as session, session.begin():
                if consented:  # before the insert, whose foreign key also locks the study row
                    self._lock_study(session)
                participant = Participant(
                    study_id=self.study_id,
                    token=token,
                    source=source,
                    label=label,
                    answered=0,
                    join_key=key,
                    worker_id=worker_id,
                )
                session.add(participant)
                session.flush()
                if consented:
                    self._allocate(session, participant)
        except IntegrityError:
            existing = self._joined_with(key, worker_id)
            if existing is None:
                raise
            return existing, False  # the same key or worker joined concurrently
        return token, True

    def _joined_with(self, key: str | None, worker_id: str | None) -> str | None:
        """The token of the participant who joined with this client key or worker id."""
        for column, value in ((P.c.worker_id, worker_id), (P.c.join_key, key)):
            if value is None:
                continue
            with self.db.reader_engine.connect() as connection:
                token = connection.execute(
                    select(P.c.token).where(P.c.study_id == self.study_id, column == value)
                ).scalar()
            if token is not None:
                return token
        return None

    def consent(self, token: str) -> bool:
        """Record consent and plan the trials; False for an unknown token. Idempotent."""
        if not TOKEN_PATTERN.match(token):
            return False
        with self._local_lock, self.db.write() as session, session.begin():
            participant = self._participant(session, token)
            if participant is None:
                return False
            if participant.consented_at is None:
                self._lock_study(session)
                session.refresh(participant)  # consented meanwhile in another process?
                if participant.consented_at is None:
                    self._allocate(session, participant)
            return True

    def _lock_study(self, session: Session) -> None:
        """Allocations one at a time across processes: PostgreSQL locks the study's row until
        commit (SQLite's BEGIN IMMEDIATE already holds the database's write lock)."""
        # FOR NO KEY UPDATE: other allocations wait; rows merely referencing the study do not.
        session.execute(
            select(Study.id).where(Study.id == self.study_id).with_for_update(key_share=True)
        )

    def _allocate(self, session: Session, participant: Participant) -> None:
        """Plan the participant's trials from the cell counters (a few rows per photo, however
        many people have joined) and add them to the counters. Call with the study locked."""
        m = self.manifest
        now = self.clock()
        if now >= self._next_release:
            self._next_release = now + RELEASE_EVERY_S
            self._release_abandoned(session, now)
        counts: dict[tuple[str, str], int] = {}
        sentinel_counts: dict[str, int] = {}
        cells = select(C.c.photo, C.c.condition, C.c.planned).where(C.c.study_id == self.study_id)
        for photo, condition, n in session.execute(cells):
            if condition == SENTINEL:
                sentinel_counts[photo] = n
            else:
                counts[(photo, condition)] = n
        models = list(m.models)
        if m.allocation == "per-model":
            per_model = dict(
                session.execute(
                    select(ModelCount.model, ModelCount.participants).where(
                        ModelCount.study_id == self.study_id
                    )
                ).all()
            )
            participant.model = choose_model(models, per_model, self._rng)
            models = [participant.model]
            self._count_models(session, Counter([participant.model]), +1)
        plan = plan_trials(
            protocol=m.protocol,
            photos=m.photos,
            conditions=conditions_for(m.protocol, models),
            test_trials=m.test_trials,
            practice_trials=m.practice_trials,
            sentinels=self.sentinels,
            counts=counts,
            sentinel_counts=sentinel_counts,
            rng=self._rng,
            allow_repeats=m.allow_repeats,
        )
        rows = []
        for position, planned in enumerate(plan):
            left, right = self._stimuli_for(planned.photo, planned.condition, planned.fake_side)
            rows.append(
                {
                    "participant_id": participant.id,
                    "position": position,
                    "public_id": secrets.token_urlsafe(12),
                    "phase": planned.phase,
                    "condition": planned.condition,
                    "photo": planned.photo,
                    "left_id": left,
                    "right_id": right,
                    "fake_side": planned.fake_side,
                }
            )
        session.execute(insert(T), rows)  # one executemany, not forty ORM objects
        tested = Counter((t.photo, t.condition) for t in plan if t.phase == "test")
        self._add_to_cells(session, tested, +1)
        participant.consented_at = datetime.now(timezone.utc)
        participant.active_at = now

    def _add_to_cells(self, session: Session, cells: Counter, sign: int) -> None:
        if cells:
            session.execute(
                _PLAN_CELL,
                [
                    {
                        "study": self.study_id,
                        "cell_photo": p,
                        "cell_condition": c,
                        "delta": n * sign,
                    }
                    for (p, c), n in sorted(cells.items())  # one lock order: no deadlocks
                ],
            )

    def _stimuli_for(
        self, photo: str, condition: str, fake_side: str | None
    ) -> tuple[int, int | None]:
        shown = self._stimulus[(photo, condition)]
        if self.protocol == "single":
            return shown, None
        original = self._stimulus[(photo, "real")]
        return (shown, original) if fake_side == "left" else (original, shown)

    def _participant(self, session: Session, token: str) -> Participant | None:
        return session.scalar(
            select(Participant).where(
                Participant.token == token, Participant.study_id == self.study_id
            )
        )

    # --- abandoned participants ---------------------------------------------------------------
    def release_abandoned(self) -> int:
        """Free the planned cells of participants silent for ``release_after_s``; how many."""
        with self._local_lock, self.db.write() as session, session.begin():
            self._lock_study(session)
            return self._release_abandoned(session, self.clock())

    def _release_abandoned(self, session: Session, now: float) -> int:
        # Only participants with trials still planned have an active_at: the index finds the
        # stale ones without reading finished or released participants.
        stale = session.execute(
            select(P.c.id, P.c.model)
            .where(P.c.study_id == self.study_id, P.c.active_at < now - self.release_after_s)
            .limit(500)
        ).all()
        if not stale:
            return 0
        ids = [pid for pid, _ in stale]
        self._add_to_cells(session, self._unanswered_cells(session, ids), -1)
        self._count_models(session, Counter(m for _, m in stale if m is not None), -1)
        session.execute(update(P).where(P.c.id.in_(ids)).values(active_at=None, released_at=now))
        return len(ids)

    @staticmethod
    def _unanswered_cells(session: Session, participant_ids: list[int]) -> Counter:
        """{(photo, condition): n} of these participants' test trials not yet answered."""
        remaining = session.execute(
            select(T.c.photo, T.c.condition, func.count())
            .select_from(T.join(P, T.c.participant_id == P.c.id))
            .where(P.c.id.in_(participant_ids), T.c.phase == "test", T.c.position >= P.c.answered)
            .group_by(T.c.photo, T.c.condition)
        ).all()
        return Counter({(photo, condition): n for photo, condition, n in remaining})

    def _count_models(self, session: Session, models: Counter, sign: int) -> None:
        for model, n in sorted(models.items()):
            session.execute(
                update(ModelCount)
                .where(ModelCount.study_id == self.study_id, ModelCount.model == model)
                .values(participants=ModelCount.participants + n * sign)
            )

    def _reclaim(self, participant_id: int) -> None:
        """A released participant came back: their remaining trials count again."""
        with self._local_lock, self.db.write() as session, session.begin():
            self._lock_study(session)
            row = session.execute(
                select(P.c.released_at, P.c.model).where(P.c.id == participant_id)
            ).first()
            if row is None or row.released_at is None:
                return  # reclaimed meanwhile
            self._add_to_cells(session, self._unanswered_cells(session, [participant_id]), +1)
            if row.model is not None:
                self._count_models(session, Counter([row.model]), +1)
            session.execute(
                update(P)
                .where(P.c.id == participant_id)
                .values(released_at=None, active_at=self.clock())
            )

    # --- trials -------------------------------------------------------------------------------
    def state(self, token: str) -> State | None:
        """Where the participant is: the same answer after a reload or a reconnect."""
        if not TOKEN_PATTERN.match(token):
            return None
        # One round trip (the hot path): the participant and their current trial, if any.
        with self.db.reader_engine.connect() as connection:
            row = connection.execute(_STATE, {"token": token, "study": self.study_id}).first()
        if row is None:
            return None
        state = State(token, row.consented_at is not None, row.answered, self.total)
        if state.consented and not state.done and row.public_id is not None:
            state.trial = self._view(row.public_id, row.phase, row.answered)
        return state

    def _view(self, public_id: str, phase: str, position: int) -> TrialView:
        slots = ["1"] if self.protocol == "single" else ["1", "2"]
        return TrialView(public_id, phase, position + 1, self.total, slots)

    def image(self, token: str, trial_id: str, slot: str) -> ImageResult:
        """The media id behind an image slot of this participant's *current* trial.

        Answered and future trials are ``not_found``; with an exposure limit the images are
        served from the first request for ``exposure_ms`` plus ``LOAD_ALLOWANCE_S``, then
        ``gone``: a reload or a saved link cannot show them longer than the study allows.
        """
        if (
            slot not in ("1", "2")
            or not TOKEN_PATTERN.match(token)
            or not TOKEN_PATTERN.match(trial_id)
        ):
            return ImageResult("not_found")
        with self.db.reader_engine.connect() as connection:
            row = connection.execute(
                _IMAGE, {"trial": trial_id, "token": token, "study": self.study_id}
            ).first()
        if row is None or row.consented_at is None or row.position != row.answered:
            return ImageResult("not_found")
        stimulus = row.left_id if slot == "1" else row.right_id
        if stimulus is None:
            return ImageResult("not_found")
        exposure = self.manifest.exposure_ms
        if exposure:
            now = self.clock()
            shown_at = row.shown_at
            if shown_at is None:
                with self.db.writer_engine.begin() as connection:
                    connection.execute(
                        update(T)
                        .where(T.c.id == row.id, T.c.shown_at.is_(None))
                        .values(shown_at=now)
                    )
                    shown_at = connection.execute(
                        select(T.c.shown_at).where(T.c.id == row.id)
                    ).scalar()
            if now > shown_at + exposure / 1000 + LOAD_ALLOWANCE_S:
                return ImageResult("gone")
        return ImageResult("ok", self._media[stimulus])

    def _owned_trial(self, session: Session, token: str, trial_id: str) -> Trial | None:
        return session.scalar(
            select(Trial)
            .join(Participant, Trial.participant_id == Participant.id)
            .where(
                Trial.public_id == trial_id,
                Participant.token == token,
                Participant.study_id == self.study_id,
            )
        )

    def feedback(self, token: str, trial_id: str) -> SubmitResult | None:
        """The feedback on an answered practice trial (None for anything else)."""
        if not TOKEN_PATTERN.match(token) or not TOKEN_PATTERN.match(trial_id):
            return None
        with self.db.read() as session:
            trial = self._owned_trial(session, token, trial_id)
            if trial is None or trial.phase != "practice" or trial.response is None:
                return None
            return self._practice_result(trial, trial.response.correct)

    def _practice_result(self, trial: Trial, correct: bool) -> SubmitResult:
        return SubmitResult(
            "stored",
            correct=correct,
            fake_side=trial.fake_side,
            condition_is_real=trial.condition == "real",
        )

    def submit(
        self, token: str, trial_id: str, answer: str, key: str, rt_ms: int | None
    ) -> SubmitResult:
        """Store one answer, once. Nothing is written unless the result is ``stored``."""
        if not (TOKEN_PATTERN.match(token) and TOKEN_PATTERN.match(trial_id)):
            return SubmitResult("unknown", "no such trial")
        if answer not in self.answers:
            return SubmitResult("invalid", f"answer must be one of: {', '.join(self.answers)}")
        if not KEY_PATTERN.match(key):
            return SubmitResult("invalid", "the submit key must be 8-64 letters, digits, - or _")
        if rt_ms is not None and not 0 <= rt_ms <= MAX_RT_MS:
            return SubmitResult("invalid", "the response time is out of range")
        try:
            # Core, not the ORM: this runs once per answer, and the load test sends thousands.
            with self.db.writer_engine.begin() as connection:
                trial = connection.execute(
                    _FOUND, {"trial": trial_id, "token": token, "study": self.study_id}
                ).first()
                if trial is None:
                    return SubmitResult("unknown", "no such trial")
                if trial.consented_at is None:
                    return SubmitResult("not_consented", "consent first")
                if trial.submit_key is not None:
                    if trial.submit_key == key:
                        return SubmitResult("already_recorded", "this answer was already recorded")
                    return SubmitResult("already_answered", "this trial was already answered")
                if trial.position != trial.answered:
                    return SubmitResult("not_current", "this is not the current trial")
                if trial.released_at is not None:
                    raise _Released(trial.participant_id)
                correct, judged_real = judge(
                    self.protocol, trial.condition, trial.fake_side, answer
                )
                now = datetime.now(timezone.utc)
                connection.execute(
                    _INSERT,
                    {
                        "trial_id": trial.id,
                        "participant_id": trial.participant_id,
                        "submit_key": key,
                        "answer": answer,
                        "correct": correct,
                        "judged_real": judged_real,
                        "rt_ms": rt_ms,
                        "created_at": now,
                    },
                )
                finished = trial.answered + 1 >= self.total
                moved = connection.execute(
                    _ADVANCE,
                    {
                        "pid": trial.participant_id,
                        "seen": trial.answered,
                        "now_answered": trial.answered + 1,
                        "finished": now if finished else None,
                        "active": None if finished else self.clock(),
                    },
                )
                if moved.rowcount != 1:  # another answer got in first (PostgreSQL): undo ours
                    raise _Conflict
                state = State(token, True, trial.answered + 1, self.total)
                if not finished:
                    following = connection.execute(
                        _AT_POSITION,
                        {"participant": trial.participant_id, "position": trial.answered + 1},
                    ).first()
                    state.trial = self._view(
                        following.public_id, following.phase, trial.answered + 1
                    )
            # Leaving the block committed; only now is the answer acknowledged.
        except IntegrityError:
            # The same key or trial was stored concurrently (or the key was used before).
            return self._conflict(trial_id, key)
        except _Conflict:
            return SubmitResult("already_answered", "this trial was already answered")
        except _Released as released:  # back after being counted as abandoned
            self._reclaim(released.participant_id)
            return self.submit(token, trial_id, answer, key, rt_ms)
        if trial.phase == "practice":
            return SubmitResult(
                "stored",
                correct=correct,
                fake_side=trial.fake_side,
                condition_is_real=trial.condition == "real",
                state=state,
            )
        return SubmitResult("stored", state=state)

    def _conflict(self, trial_id: str, key: str) -> SubmitResult:
        with self.db.reader_engine.connect() as connection:
            stored = connection.execute(
                select(T.c.public_id)
                .select_from(R.join(T, R.c.trial_id == T.c.id))
                .where(R.c.submit_key == key)
            ).scalar()
        if stored == trial_id:
            return SubmitResult("already_recorded", "this answer was already recorded")
        if stored is not None:
            return SubmitResult("key_reused", "this submit key was used for another answer")
        return SubmitResult("already_answered", "this trial was already answered")

    # --- organiser ----------------------------------------------------------------------------
    def create_invites(self, count: int, label: str | None = None) -> list[str]:
        return [
            self.create_participant(source="invite", consented=False, label=label)
            for _ in range(count)
        ]

    def participation(self) -> dict[str, int]:
        with self.db.read() as session:
            base = (
                select(func.count())
                .select_from(Participant)
                .where(Participant.study_id == self.study_id)
            )
            return {
                "participants": session.scalar(base),
                "consented": session.scalar(base.where(Participant.consented_at.is_not(None))),
                "finished": session.scalar(base.where(Participant.finished_at.is_not(None))),
                "abandoned": session.scalar(base.where(Participant.released_at.is_not(None))),
                "answers": session.scalar(
                    select(func.count())
                    .select_from(Response)
                    .join(Participant, Response.participant_id == Participant.id)
                    .where(Participant.study_id == self.study_id)
                ),
            }

    def answers_version(self) -> tuple[int, int]:
        """(count, last id) of the study's answers: changes whenever an answer is stored."""
        with self.db.reader_engine.connect() as connection:
            row = connection.execute(
                select(func.count(R.c.id), func.max(R.c.id))
                .select_from(R.join(P, R.c.participant_id == P.c.id))
                .where(P.c.study_id == self.study_id)
            ).first()
        return int(row[0]), int(row[1] or 0)

    # --- organiser logins ---------------------------------------------------------------------
    @staticmethod
    def _hash(session_id: str) -> str:
        return hashlib.sha256(session_id.encode()).hexdigest()

    def open_session(self, ttl_s: float = SESSION_TTL_S) -> str:
        """A new organiser login; the returned id goes in the cookie (only its hash is kept)."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        with self.db.writer_engine.begin() as connection:
            connection.execute(delete(OrganiserSession).where(OrganiserSession.expires_at < now))
            connection.execute(
                insert(OrganiserSession).values(
                    id_hash=self._hash(session_id), study_id=self.study_id, expires_at=now + ttl_s
                )
            )
        return session_id

    def session_valid(self, session_id: str) -> bool:
        if not session_id or len(session_id) > 128:
            return False
        with self.db.reader_engine.connect() as connection:
            expires = connection.execute(
                select(OrganiserSession.expires_at).where(
                    OrganiserSession.id_hash == self._hash(session_id),
                    OrganiserSession.study_id == self.study_id,
                )
            ).scalar()
        return expires is not None and expires > self.clock()

    def close_session(self, session_id: str) -> None:
        with self.db.writer_engine.begin() as connection:
            connection.execute(
                delete(OrganiserSession).where(OrganiserSession.id_hash == self._hash(session_id))
            )
