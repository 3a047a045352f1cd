"""The STUDY folder: ``study.json`` (settings and stimuli), ``media/`` (images), the database.

Light on purpose (no torch): the server reads the folder but never runs a model.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from .db import CellCount, Database, ModelCount, Participant, Stimulus, Study, Trial
from .design import sentinel_count
from .errors import fail
from .files import write_atomically

MANIFEST = "study.json"
WORKER_ID_PARAMS = ("PROLIFIC_PID", "workerId")  # Prolific, Amazon Mechanical Turk
MEDIA = "media"


@dataclass
class StimulusEntry:
    media_id: str  # opaque random id; the file is media/<media_id>.png
    photo: str
    condition: str  # "real", "sentinel" or a model name
    width: int
    height: int
    source: str | None = None  # a sentinel: the model whose colourisation it inverts


@dataclass
class Manifest:
    public_id: str
    name: str
    protocol: str
    allocation: str
    models: list[str]
    photos: list[str]
    test_trials: int
    practice_trials: int
    sentinel_rate: float
    exposure_ms: int | None
    open_signup: bool = True
    sentinel_threshold: float = 0.75
    seed: int = 0
    sentinels: int | None = None  # sentinel trials per participant (None: from the rate)
    allow_repeats: bool = False  # may a participant see a photo twice? (the organiser's choice)
    # URL parameters carrying a recruitment platform's participant id (Prolific, MTurk): the same
    # id resumes the same session. With require_worker_id, joining without one is refused.
    worker_id_params: list[str] = field(default_factory=lambda: list(WORKER_ID_PARAMS))
    require_worker_id: bool = False
    stimuli: list[StimulusEntry] = field(default_factory=list)

    @property
    def sentinels_per_participant(self) -> int:
        """The recorded sentinel count; a manifest from before it was recorded: from the rate."""
        if self.sentinels is not None:
            return self.sentinels
        return sentinel_count(self.test_trials, self.sentinel_rate)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        data["stimuli"] = [StimulusEntry(**s) for s in data.get("stimuli", [])]
        return cls(**data)


def media_path(study_dir: str | os.PathLike, media_id: str) -> Path:
    return Path(study_dir) / MEDIA / f"{media_id}.png"


def write_manifest(study_dir: str | os.PathLike, manifest: Manifest) -> Path:
    """Atomically write ``study.json`` (a crash never leaves half a manifest)."""
    path = Path(study_dir) / MANIFEST
    return write_atomically(path, manifest.to_json().encode("utf-8"), prefix=".study-")


def read_manifest(study_dir: str | os.PathLike) -> Manifest:
    folder = Path(study_dir)
    if not folder.is_dir():
        fail(f"{folder}: no such study folder (create one with `python -m study prepare`)")
    path = folder / MANIFEST
    if not path.is_file():
        fail(
            f"{folder} is not a prepared study: {MANIFEST} is missing (run `python -m study prepare`)"
        )
    try:
        return Manifest.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, TypeError) as error:
        fail(f"{path} is damaged: {error}")


def record_manifest(db: Database, manifest: Manifest) -> int:
    """Insert the study and its stimuli into ``db`` unless already there; return the study id.

    Idempotent, so the same STUDY folder can be pointed at a fresh database (e.g. PostgreSQL).
    """
    with db.write() as session, session.begin():
        study = session.scalar(select(Study).where(Study.public_id == manifest.public_id))
        if study is not None:
            _ensure_counts(session, study.id, manifest)
            return study.id
        study = Study(
            public_id=manifest.public_id,
            name=manifest.name,
            protocol=manifest.protocol,
            allocation=manifest.allocation,
            test_trials=manifest.test_trials,
            practice_trials=manifest.practice_trials,
            sentinel_rate=manifest.sentinel_rate,
            exposure_ms=manifest.exposure_ms,
            open_signup=manifest.open_signup,
            settings={
                "models": manifest.models,
                "photos": manifest.photos,
                "sentinel_threshold": manifest.sentinel_threshold,
                "seed": manifest.seed,
            },
        )
        session.add(study)
        session.flush()
        session.add_all(
            Stimulus(
                study_id=study.id,
                media_id=s.media_id,
                photo=s.photo,
                condition=s.condition,
                width=s.width,
                height=s.height,
            )
            for s in manifest.stimuli
        )
        session.flush()
        _ensure_counts(session, study.id, manifest)
        return study.id


def _ensure_counts(session, study_id: int, manifest: Manifest) -> None:
    """The allocation's counters: one row per (photo, condition) cell and per model. A study
    recorded by an earlier version gets them counted from its trials, once."""
    if session.scalar(select(func.count()).where(CellCount.study_id == study_id)):
        return
    planned = dict.fromkeys(
        ((p, c) for p in manifest.photos for c in [*manifest.models, "real", "sentinel"]), 0
    )
    counted = (
        select(Trial.photo, Trial.condition, func.count())
        .join(Participant, Trial.participant_id == Participant.id)
        .where(Participant.study_id == study_id, Trial.phase == "test")
        .group_by(Trial.photo, Trial.condition)
    )
    for photo, condition, n in session.execute(counted):
        planned[(photo, condition)] = n
    session.add_all(
        CellCount(study_id=study_id, photo=p, condition=c, planned=n)
        for (p, c), n in planned.items()
    )
    per_model = dict(
        session.execute(
            select(Participant.model, func.count())
            .where(Participant.study_id == study_id, Participant.model.is_not(None))
            .group_by(Participant.model)
        ).all()
    )
    session.add_all(
        ModelCount(study_id=study_id, model=m, participants=per_model.get(m, 0))
        for m in manifest.models
    )
    session.flush()
