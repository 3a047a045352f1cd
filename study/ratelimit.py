"""How often one client (an IP address) may join the study, counted in the study's database so
that every server process (uvicorn workers, machines behind one proxy) enforces one limit.

A generic cell rate algorithm: each client has one number, the time at which its allowance is
full again. A join moves it one interval (60 s / rate) later; it is allowed while that time is at
most ``burst`` intervals ahead. One upsert decides and records a join atomically, on SQLite and on
PostgreSQL, so two processes never both spend the same allowance. Rows of clients whose allowance
is full again are deleted now and then, so the table holds only the last minute's clients.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from sqlalchemy import case, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from .db import Database, JoinAllowance

SWEEP_EVERY_S = 60.0
A = JoinAllowance.__table__


class JoinLimiter:
    """``per_minute`` joins per client on average, up to ``burst`` at once (default: a minute's
    worth), in the study ``study_id`` of ``db``. ``clock`` gives Unix time (shared by processes)."""

    def __init__(
        self,
        db: Database,
        study_id: int,
        per_minute: float,
        burst: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("the rate must be positive")
        self.db, self.study_id, self.clock = db, study_id, clock
        self.interval = 60.0 / per_minute  # seconds per join
        self.burst = burst if burst is not None else max(1, round(per_minute))
        self._insert = (postgresql if db.engine.dialect.name == "postgresql" else sqlite).insert
        self._next_sweep = 0.0

    def retry_after(self, client: str) -> int:
        """0 if ``client`` may join now (recorded), else whole seconds to wait."""
        now = self.clock()
        client = client[:64]
        window = self.burst * self.interval
        later = case((A.c.full_at > now, A.c.full_at), else_=now) + self.interval
        upsert = (
            self._insert(A)
            .values(study_id=self.study_id, client=client, full_at=now + self.interval)
            .on_conflict_do_update(
                index_elements=["study_id", "client"],
                set_={"full_at": later},
                where=later - now <= window,
            )
            .returning(A.c.full_at)
        )
        with self.db.write() as session, session.begin():
            if now >= self._next_sweep:
                self._next_sweep = now + SWEEP_EVERY_S
                session.execute(delete(A).where(A.c.study_id == self.study_id, A.c.full_at < now))
            if session.execute(upsert).first() is not None:
                return 0
            full_at = session.scalar(
                select(A.c.full_at).where(A.c.study_id == self.study_id, A.c.client == client)
            )
        # Allowed again once one interval has drained: full_at - now <= window - interval.
        wait = (full_at or now) - now - (window - self.interval)
        return max(1, math.ceil(wait))
