"""Simulated participants over HTTP, and study server processes to aim them at.

A simulated participant behaves like the browser page: it joins with a client key, one answer at
a time, each with its own submit key; after a dropped connection it resends the same key, so an
answer the server committed but could not acknowledge comes back as ``already_recorded``. On
loopback each one connects from its own address (127.1.x.y), as separate people would.

Used by ``python -m study.loadtest`` (:mod:`study.loadtest`), by the acceptance checks
(:mod:`study.acceptance`) and by the test suite.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import urlopen


@dataclass
class ParticipantLog:
    token: str = ""
    acknowledged: list[tuple[str, str]] = field(default_factory=list)  # (trial id, submit key)
    recovered: list[tuple[str, str]] = field(default_factory=list)  # committed, ack lost
    resumed_at: list[tuple[int, int]] = field(
        default_factory=list
    )  # (acked so far, server's answered)
    errors: list[str] = field(default_factory=list)  # unexpected HTTP statuses
    latencies: list[float] = field(default_factory=list)  # seconds per acknowledged answer
    waited_429: int = 0  # joins told to wait (rate limit)
    finished: bool = False
    ended: float = 0.0  # time.perf_counter() when this participant stopped


@dataclass
class LoadResult:
    participants: list[ParticipantLog]
    seconds: float
    connection_failures: int = 0
    started: float = 0.0  # time.perf_counter() at the start

    @property
    def participants_seconds(self) -> float:
        """Until the last participant stopped (``seconds`` also waits for ``during``)."""
        return max((p.ended for p in self.participants), default=self.started) - self.started

    @property
    def acknowledged(self) -> int:
        return sum(len(p.acknowledged) + len(p.recovered) for p in self.participants)

    @property
    def errors(self) -> list[str]:
        return [e for p in self.participants for e in p.errors]

    def latency_ms(self, *quantiles: float) -> list[float]:
        """Answer latency percentiles (e.g. 50, 90, 99) in milliseconds."""
        import numpy as np

        values = [t for p in self.participants for t in p.latencies]
        if not values:
            return [float("nan")] * len(quantiles)
        return [float(v) * 1000 for v in np.percentile(values, quantiles)]


def client_address(group: int, index: int) -> str:
    """A loopback address of its own for simulated client ``index`` of ``group`` (Linux routes
    all of 127.0.0.0/8 to loopback), so per-client limits see separate people."""
    return f"127.{group}.{index // 250}.{index % 250 + 1}"


class HttpClient:
    """One keep-alive HTTP/1.1 connection (the standard library's: a load generator must be
    lighter than the server it measures, and httpx costs several times more CPU per request)."""

    def __init__(self, host: str, port: int, timeout: float, source: str | None = None) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.source = source if host.startswith("127.") else None
        self.connection: http.client.HTTPConnection | None = None
        self.last_headers: dict[str, str] = {}

    def raw(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        if self.connection is None:
            source = (self.source, 0) if self.source else None
            self.connection = http.client.HTTPConnection(
                self.host, self.port, timeout=self.timeout, source_address=source
            )
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            self.connection.request(method, path, body=data, headers=headers)
            response = self.connection.getresponse()
            payload = response.read()
        except OSError as error:
            self.close()
            if self.source and getattr(error, "errno", None) == 99:  # EADDRNOTAVAIL: no alias
                self.source = None
            raise ConnectionError(f"{method} {path}") from None
        except http.client.HTTPException:
            self.close()
            raise ConnectionError(f"{method} {path}") from None
        self.last_headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, payload

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        status, payload = self.raw(method, path, body)
        try:
            return status, json.loads(payload) if payload else {}
        except ValueError:
            return status, {"text": payload[:200].decode(errors="replace")}

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class _Run:
    def __init__(
        self, base_urls: Sequence[str], answers: tuple[str, str], deadline: float, seed: int
    ) -> None:
        self.servers = [urlsplit(u) for u in base_urls]
        self.answers = answers
        self.deadline = deadline
        self.seed = seed
        self.lock = threading.Lock()
        self.connection_failures = 0
        self.acked = 0

    def _count(self, attribute: str) -> None:
        with self.lock:
            setattr(self, attribute, getattr(self, attribute) + 1)

    def request(
        self, http: HttpClient, method: str, path: str, body: dict | None = None
    ) -> tuple[int, dict]:
        """Send until a response arrives: connection errors (a restarting server) are retried."""
        delay = 0.05
        while True:
            try:
                return http.request(method, path, body)
            except ConnectionError:
                self._count("connection_failures")
                if time.monotonic() > self.deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def participant(self, index: int, log: ParticipantLog) -> None:
        rng = random.Random(self.seed * 100_003 + index)
        server = self.servers[index % len(self.servers)]
        http = HttpClient(server.hostname, server.port or 80, 30.0, client_address(1, index))
        try:
            self._participant(http, rng, log)
        except Exception as error:  # reported, not raised: the other threads carry on
            log.errors.append(f"{type(error).__name__}: {error}")
        finally:
            http.close()
            log.ended = time.perf_counter()

    def _join(self, http: HttpClient, log: ParticipantLog) -> dict | None:
        key = uuid.uuid4().hex  # kept until the reply arrives: a retried join is the same one
        while True:
            status, state = self.request(http, "POST", "/api/join", {"consent": True, "key": key})
            if status in (200, 201):
                return state
            if status == 429 and time.monotonic() < self.deadline:
                log.waited_429 += 1
                time.sleep(float(http.last_headers.get("retry-after", "1")))
                continue
            log.errors.append(f"join: {status} {state}")
            return None

    def _participant(self, http: HttpClient, rng: random.Random, log: ParticipantLog) -> None:
        state = self._join(http, log)
        if state is None:
            return
        log.token = token = state["token"]
        while not state["done"]:
            trial = state["trial"]
            body = {
                "trial": trial["id"],
                "answer": rng.choice(self.answers),
                "key": uuid.uuid4().hex,
                "rt_ms": 700,
            }
            started = time.perf_counter()
            try:
                status, reply = http.request("POST", f"/api/p/{token}/answer", body)
            except ConnectionError:
                # The server went away: did it commit? Resume like the page does, then decide.
                self._count("connection_failures")
                done = len(log.acknowledged) + len(log.recovered)
                state = self._state(http, log, token)
                if state["answered"] not in (done, done + 1):
                    log.errors.append(f"resumed at {state['answered']} after {done} answers")
                    return
                # Resend the same key: stored now, or "already_recorded" if the first one was.
                status, reply = self.request(http, "POST", f"/api/p/{token}/answer", body)
                if status == 409 and reply.get("status") == "already_recorded":
                    log.recovered.append((trial["id"], body["key"]))
                    self._count("acked")
                    state = self._state(http, log, token)
                    continue
            if status != 200:
                log.errors.append(f"answer: {status} {reply}")
                return
            log.latencies.append(time.perf_counter() - started)
            log.acknowledged.append((trial["id"], body["key"]))
            self._count("acked")
            state = reply
        log.finished = True

    def _state(self, http: HttpClient, log: ParticipantLog, token: str) -> dict:
        status, state = self.request(http, "GET", f"/api/p/{token}")
        if status != 200:
            raise RuntimeError(f"state: {status} {state}")
        log.resumed_at.append((len(log.acknowledged) + len(log.recovered), state["answered"]))
        return state


def simulate(
    base_url: str | Sequence[str],
    participants: int,
    *,
    answers: tuple[str, str] = ("left", "right"),
    timeout: float = 120.0,
    seed: int = 0,
    during: Callable[[_Run], None] | None = None,
) -> LoadResult:
    """Run ``participants`` simulated people to the end of their trials, one thread each.

    Several ``base_url``s share the participants out in turn (servers on one database).
    ``during(run)`` optionally runs alongside them in its own thread (the fault test kills and
    restarts the server from there, watching ``run.acked``; the flood joins from there).
    """
    urls = [base_url] if isinstance(base_url, str) else list(base_url)
    run = _Run([u.rstrip("/") for u in urls], answers, time.monotonic() + timeout, seed)
    logs = [ParticipantLog() for _ in range(participants)]
    threads = [
        threading.Thread(target=run.participant, args=(i, log)) for i, log in enumerate(logs)
    ]
    if during is not None:
        threads.append(threading.Thread(target=during, args=(run,)))
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LoadResult(logs, time.perf_counter() - start, run.connection_failures, start)


@dataclass
class FloodResult:
    statuses: Counter
    retry_after: Counter  # Retry-After values of the 429s
    seconds: float


def flood_joins(base_url: str, threads: int, joins: int, *, timeout: float = 300.0) -> FloodResult:
    """``threads`` hostile clients (one address each), each sending ``joins`` sign-ups as fast
    as it can, without a client key and ignoring Retry-After."""
    server = urlsplit(base_url)
    statuses: Counter = Counter()
    waits: Counter = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + timeout

    def client(index: int) -> None:
        http = HttpClient(server.hostname, server.port or 80, 30.0, client_address(2, index))
        mine, my_waits = Counter(), Counter()
        try:
            for _ in range(joins):
                if time.monotonic() > deadline:
                    break
                try:
                    status, _ = http.raw("POST", "/api/join", {"consent": True})
                except ConnectionError:
                    mine["connection error"] += 1
                    continue
                mine[status] += 1
                if status == 429:
                    my_waits[http.last_headers.get("retry-after", "missing")] += 1
        finally:
            http.close()
            with lock:
                statuses.update(mine)
                waits.update(my_waits)

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return FloodResult(statuses, waits, time.perf_counter() - start)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``python -m study serve STUDY`` in a child process on 127.0.0.1 (the organiser token
    travels in the environment, never on the command line)."""

    def __init__(
        self,
        study_dir: str | os.PathLike,
        token: str,
        *,
        port: int | None = None,
        database_url: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.study_dir, self.token = Path(study_dir), token
        self.port = port or free_port()
        self.env = dict(os.environ)
        self.env.pop("DATABASE_URL", None)
        self.env["STUDY_ORGANISER_TOKEN"] = token
        if database_url:
            self.env["DATABASE_URL"] = database_url
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen | None = None
        self.log = self.study_dir / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        command = [sys.executable, "-m", "study", "serve", str(self.study_dir)]
        command += ["--port", str(self.port), *self.extra_args]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the study server exited with {self.process.returncode}: "
                    + self.log.read_text()[-2000:]
                )
            try:
                with urlopen(self.url + "/", timeout=1.0) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the study server did not start within {timeout:.0f} s")

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no flushing - a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> ServerProcess:
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A fresh, uniquely named schema on the PostgreSQL server at ``url``, dropped afterwards.

    Yields ``url`` with ``search_path`` set to that schema, so every run starts from empty
    tables whatever an earlier (or a concurrent) run left behind.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    schema = f"study_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
