"""Storage: SQLAlchemy 2 models and engines.

SQLite in WAL mode inside the STUDY folder is the embedded default; ``DATABASE_URL`` (any
SQLAlchemy URL, e.g. ``postgresql+psycopg://user@host/db``) points the same tables at a server.
An answer is a row in ``responses`` with a unique ``trial_id`` and a unique ``submit_key``, so it
is stored at most once however often it is sent; the server acknowledges it only after commit.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, sessionmaker

from .errors import fail
from .files import write_atomically

SQLITE_NAME = "study.sqlite"
DATABASE_RECORD = "database.json"  # which database the folder's study lives in
BUSY_TIMEOUT_MS = 30_000  # writers queue behind each other instead of failing
POOL_SIZE = 40  # = the server's worker threads (anyio's default)
SQLITE_POOL_SIZE = 15


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    protocol: Mapped[str] = mapped_column(String(16))  # "single" | "2afc"
    allocation: Mapped[str] = mapped_column(String(16))  # "mixed" | "per-model"
    test_trials: Mapped[int] = mapped_column(Integer)
    practice_trials: Mapped[int] = mapped_column(Integer)
    sentinel_rate: Mapped[float]
    exposure_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    open_signup: Mapped[bool] = mapped_column(Boolean, default=True)
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    stimuli: Mapped[list[Stimulus]] = relationship(back_populates="study")


class Stimulus(Base):
    """One image file: an original photo, a model's colourisation, or a sentinel."""

    __tablename__ = "stimuli"
    __table_args__ = (UniqueConstraint("study_id", "photo", "condition"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    media_id: Mapped[str] = mapped_column(String(64), unique=True)  # opaque; also the file name
    photo: Mapped[str] = mapped_column(String(200))  # the source photo (organiser only)
    condition: Mapped[str] = mapped_column(String(64))  # "real", "sentinel" or a model name
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)

    study: Mapped[Study] = relationship(back_populates="stimuli")


class CellCount(Base):
    """Test trials planned per (photo, condition) cell, kept as each participant is planned (and
    released): the allocation reads these few rows instead of counting every trial."""

    __tablename__ = "cell_counts"
    __table_args__ = (UniqueConstraint("study_id", "photo", "condition"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    photo: Mapped[str] = mapped_column(String(200))
    condition: Mapped[str] = mapped_column(String(64))  # a model, "real" or "sentinel"
    planned: Mapped[int] = mapped_column(Integer, default=0)


class ModelCount(Base):
    """Per-model allocation: participants planned on each model (released ones not counted)."""

    __tablename__ = "model_counts"
    __table_args__ = (UniqueConstraint("study_id", "model"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    model: Mapped[str] = mapped_column(String(64))
    participants: Mapped[int] = mapped_column(Integer, default=0)


class JoinAllowance(Base):
    """The join rate limit of one client address, shared by every server process: the time at
    which its allowance is next full again (a generic cell rate algorithm keeps one number)."""

    __tablename__ = "join_allowances"
    __table_args__ = (UniqueConstraint("study_id", "client"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    client: Mapped[str] = mapped_column(String(64))
    full_at: Mapped[float] = mapped_column(Float)  # Unix time


class OrganiserSession(Base):
    """A login: the cookie holds a random id; only its hash is stored, with an expiry."""

    __tablename__ = "organiser_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"))
    expires_at: Mapped[float] = mapped_column(Float)  # Unix time


class Participant(Base):
    __tablename__ = "participants"
    __table_args__ = (
        # A join retried with the same client key finds the participant it created.
        Index("ix_participants_join_key", "study_id", "join_key", unique=True),
        # One session per recruitment-platform participant id.
        Index("ix_participants_worker_id", "study_id", "worker_id", unique=True),
        # Abandoned participants are found by their last activity (NULL once finished/released).
        Index("ix_participants_active_at", "study_id", "active_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)  # the secret in their link
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    source: Mapped[str] = mapped_column(String(16))  # "invite" | "signup"
    model: Mapped[str | None] = mapped_column(String(64), nullable=True)  # per-model allocation
    answered: Mapped[int] = mapped_column(Integer, default=0)  # = position of the current trial
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    consented_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    join_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    worker_id: Mapped[str | None] = mapped_column(String(128), nullable=True)  # platform's id
    # Unix time of the last answer (or of consent) while trials are planned, else NULL.
    active_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    released_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # abandoned

    trials: Mapped[list[Trial]] = relationship(
        back_populates="participant", order_by="Trial.position"
    )


class Trial(Base):
    """One screen shown to one participant, planned when they consent."""

    __tablename__ = "trials"
    __table_args__ = (UniqueConstraint("participant_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    public_id: Mapped[str] = mapped_column(String(64), unique=True)  # opaque id in URLs
    phase: Mapped[str] = mapped_column(String(16))  # "practice" | "test"
    condition: Mapped[str] = mapped_column(String(64))  # model name, "real" or "sentinel"
    photo: Mapped[str] = mapped_column(String(200))
    # Single-image protocol: only ``left`` is shown. 2AFC: the original and the fake side by side.
    left_id: Mapped[int] = mapped_column(ForeignKey("stimuli.id"))
    right_id: Mapped[int | None] = mapped_column(ForeignKey("stimuli.id"), nullable=True)
    fake_side: Mapped[str | None] = mapped_column(String(8), nullable=True)  # "left" | "right"
    shown_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # first image request

    participant: Mapped[Participant] = relationship(back_populates="trials")
    left: Mapped[Stimulus] = relationship(foreign_keys=[left_id])
    right: Mapped[Stimulus | None] = relationship(foreign_keys=[right_id])
    response: Mapped[Response | None] = relationship(back_populates="trial", uselist=False)


class Response(Base):
    """One answer, stored exactly once."""

    __tablename__ = "responses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    trial_id: Mapped[int] = mapped_column(ForeignKey("trials.id"), unique=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("participants.id"), index=True)
    submit_key: Mapped[str] = mapped_column(String(64), unique=True)
    answer: Mapped[str] = mapped_column(String(8))  # "left"/"right" (2AFC), "real"/"fake"
    correct: Mapped[bool] = mapped_column(Boolean)
    judged_real: Mapped[bool] = mapped_column(Boolean)  # the non-original was taken for real
    rt_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    trial: Mapped[Trial] = relationship(back_populates="response")


def masked(url: str) -> str:
    """``url`` with its password replaced by ``***`` (safe to print and to store)."""
    return make_url(url).render_as_string(hide_password=True)


def recorded_database(study_dir: str | os.PathLike) -> str | None:
    """The server database a study folder was last prepared or served with (password masked),
    or None for the SQLite file inside the folder."""
    path = Path(study_dir) / DATABASE_RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))["url"]
    except (ValueError, KeyError, TypeError):
        fail(f"{path} is damaged; delete it and pass --database-url")


def record_database(study_dir: str | os.PathLike, url: str) -> None:
    """Write which database holds this study's answers into the folder (password masked)."""
    stored = None if url.startswith("sqlite") else masked(url)
    if Path(study_dir, DATABASE_RECORD).is_file() and recorded_database(study_dir) == stored:
        return
    data = json.dumps({"url": stored}).encode("utf-8")
    write_atomically(Path(study_dir) / DATABASE_RECORD, data, prefix=".database-")


def database_url(study_dir: str | os.PathLike, explicit: str | None = None) -> str:
    """``explicit`` > ``$DATABASE_URL`` > the database recorded in the STUDY folder > the
    SQLite file inside it. A recorded URL whose password was masked cannot be used as it is:
    that stops with a message asking for the full URL."""
    url = explicit or os.environ.get("DATABASE_URL")
    if url:
        return url
    recorded = recorded_database(study_dir)
    if recorded is not None:
        if "***" in recorded:
            fail(
                f"this study's answers are in {recorded}; give its password: set DATABASE_URL "
                "or pass --database-url"
            )
        return recorded
    return f"sqlite:///{Path(study_dir).resolve() / SQLITE_NAME}"


def make_engine(url: str) -> Engine:
    """An engine with the settings the study relies on.

    SQLite: WAL (readers never block the writer), a busy timeout (writers wait rather than
    fail) and foreign keys. ``synchronous=NORMAL`` by default: in WAL mode a committed answer
    survives the server process being killed, though the last ones could be lost if the whole
    machine loses power; ``STUDY_SQLITE_SYNCHRONOUS=FULL`` closes that gap at one fsync per
    answer (about 5 ms here).
    Write transactions start with ``BEGIN IMMEDIATE``: a deferred transaction that reads, then
    writes, can fail at once with "database is locked" when another writer got in first, without
    waiting for the busy timeout. Use :func:`writer` for those.
    """
    if url.startswith("sqlite"):
        synchronous = os.environ.get("STUDY_SQLITE_SYNCHRONOUS", "NORMAL").upper()
        if synchronous not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError("STUDY_SQLITE_SYNCHRONOUS must be NORMAL, FULL or EXTRA")
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            # SQLite runs one writer at a time anyway: a few connections, and threads queue for
            # them, costs less than many threads spinning in SQLite's busy handler. No overflow:
            # an overflow connection is closed on return and reopened (with its PRAGMAs) later.
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=0,
            pool_timeout=60,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection) -> None:
            # Writers take the lock up front. Readers issue no BEGIN: each statement then reads
            # one consistent WAL snapshot, which is all the single-statement hot paths need.
            if connection.get_execution_options().get("study_write", False):
                connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # As many pooled connections as the server has worker threads: an overflow connection
    # is closed when returned, so a smaller pool would reconnect on most requests under load.
    # No pool_pre_ping: it would add a round trip to every request; connections are recycled.
    return create_engine(url, pool_size=POOL_SIZE, max_overflow=10, pool_recycle=1800)


def writer(engine: Engine) -> Engine:
    """The same engine, marked so that SQLite takes the write lock at BEGIN."""
    return engine.execution_options(study_write=True)


def create_schema(engine: Engine) -> None:
    """Create missing tables, and add the columns and indexes a database made by an earlier
    version lacks (all nullable), so an existing study keeps its answers."""
    Base.metadata.create_all(engine)
    existing = inspect(engine)
    with engine.begin() as connection:
        for table in Base.metadata.sorted_tables:
            have = {c["name"] for c in existing.get_columns(table.name)}
            for column in table.columns:
                if column.name not in have:
                    kind = column.type.compile(engine.dialect)
                    connection.execute(
                        text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}')
                    )
            indexes = {i["name"] for i in existing.get_indexes(table.name)}
            for index in table.indexes:
                if index.name not in indexes:
                    index.create(connection)


class Database:
    """An engine with a read and a write session factory."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        if create:
            create_schema(self.engine)
        # Reads run in autocommit: no BEGIN / ROLLBACK round trips around a single SELECT.
        self.reader_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self.read = sessionmaker(self.reader_engine, expire_on_commit=False)
        self.writer_engine = writer(self.engine)
        self.write = sessionmaker(self.writer_engine, expire_on_commit=False)

    @classmethod
    def for_study(cls, study_dir: str | os.PathLike, url: str | None = None) -> Database:
        return cls(database_url(study_dir, url))

    def holds_study(self, public_id: str) -> bool:
        """Whether this database has the tables and the study ``public_id``."""
        if not inspect(self.engine).has_table(Study.__tablename__):
            return False
        with self.read() as session:
            return session.scalar(select(Study.id).where(Study.public_id == public_id)) is not None

    def dispose(self) -> None:
        self.engine.dispose()
