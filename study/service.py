"""What participants can do, as database transactions: join, consent, see a trial, answer.

The HTTP layer (server.py) only translates these results into pages and status codes. An answer
is accepted only for the participant's current trial; it is committed before it is acknowledged,
and the unique keys on ``responses`` make a second write of the same answer impossible.
"""

from __future__ import annotations

import random
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .db import Database, Participant, Response, Stimulus, Trial
from .design import answers_for, choose_model, conditions_for, judge, plan_trials
from .manifest import Manifest, record_manifest

KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
MAX_RT_MS = 24 * 3600 * 1000
P, T, R = Participant.__table__, Trial.__table__, Response.__table__


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
    .values(answered=bindparam("now_answered"), finished_at=bindparam("finished"))
)
_AT_POSITION = select(T.c.public_id, T.c.phase).where(
    T.c.participant_id == bindparam("participant"), T.c.position == bindparam("position")
)


class _Conflict(Exception):
    """Raised inside a transaction to roll it back."""


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


class StudyService:
    def __init__(self, db: Database, manifest: Manifest) -> None:
        self.db = db
        self.manifest = manifest
        self.study_id = record_manifest(db, manifest)
        self.protocol = manifest.protocol
        self.answers = answers_for(manifest.protocol)
        self.total = manifest.test_trials + manifest.practice_trials
        self._allocation_lock = threading.Lock()  # balance needs one allocation at a time
        self._rng = random.Random(secrets.randbits(64))
        with db.read() as session:
            rows = session.execute(
                select(Stimulus.id, Stimulus.photo, Stimulus.condition).where(
                    Stimulus.study_id == self.study_id
                )
            ).all()
        self._stimulus = {(photo, condition): sid for sid, photo, condition in rows}

    # --- participants -------------------------------------------------------------------------
    def create_participant(self, *, source: str, consented: bool, label: str | None = None) -> str:
        token = secrets.token_urlsafe(18)
        with self._allocation_lock, self.db.write() as session, session.begin():
            participant = Participant(
                study_id=self.study_id, token=token, source=source, label=label, answered=0
            )
            session.add(participant)
            session.flush()
            if consented:
                self._allocate(session, participant)
        return token

    def consent(self, token: str) -> bool:
        """Record consent and plan the trials; False for an unknown token. Idempotent."""
        if not TOKEN_PATTERN.match(token):
            return False
        with self._allocation_lock, self.db.write() as session, session.begin():
            participant = self._participant(session, token)
            if participant is None:
                return False
            if participant.consented_at is None:
                self._allocate(session, participant)
            return True

    def _allocate(self, session: Session, participant: Participant) -> None:
        m = self.manifest
        counted = (
            select(Trial.photo, Trial.condition, func.count())
            .join(Participant, Trial.participant_id == Participant.id)
            .where(Participant.study_id == self.study_id, Trial.phase == "test")
            .group_by(Trial.photo, Trial.condition)
        )
        counts: dict[tuple[str, str], int] = {}
        sentinel_counts: dict[str, int] = {}
        for photo, condition, n in session.execute(counted):
            if condition == "sentinel":
                sentinel_counts[photo] = n
            else:
                counts[(photo, condition)] = n
        models = list(m.models)
        if m.allocation == "per-model":
            per_model = dict(
                session.execute(
                    select(Participant.model, func.count())
                    .where(Participant.study_id == self.study_id, Participant.model.is_not(None))
                    .group_by(Participant.model)
                ).all()
            )
            participant.model = choose_model(models, per_model, self._rng)
            models = [participant.model]
        plan = plan_trials(
            protocol=m.protocol,
            photos=m.photos,
            conditions=conditions_for(m.protocol, models),
            test_trials=m.test_trials,
            practice_trials=m.practice_trials,
            sentinel_rate=m.sentinel_rate,
            counts=counts,
            sentinel_counts=sentinel_counts,
            rng=self._rng,
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
        participant.consented_at = datetime.now(timezone.utc)

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

    def image(self, token: str, trial_id: str, slot: str) -> str | None:
        """The media id behind an image slot of one of this participant's trials, else None."""
        if (
            slot not in ("1", "2")
            or not TOKEN_PATTERN.match(token)
            or not TOKEN_PATTERN.match(trial_id)
        ):
            return None
        with self.db.read() as session:
            trial = self._owned_trial(session, token, trial_id)
            if trial is None or trial.participant.consented_at is None:
                return None
            stimulus = trial.left if slot == "1" else trial.right
            return stimulus.media_id if stimulus is not None else None

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
                "answers": session.scalar(
                    select(func.count())
                    .select_from(Response)
                    .join(Participant, Response.participant_id == Participant.id)
                    .where(Participant.study_id == self.study_id)
                ),
            }
