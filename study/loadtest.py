"""Simulated participants over HTTP, and a server process to aim them at.

``python -m study.loadtest URL --participants 50`` checks a deployment before real people arrive;
the test suite uses the same code against a real ``python -m study serve`` process, including
killing it in the middle. A simulated participant behaves like the browser page: one answer at a
time, each with its own submit key; after a dropped connection it resends the same key, so an
answer the server committed but could not acknowledge comes back as ``already_recorded``.
"""

from __future__ import annotations

import argparse
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
from collections.abc import Callable, Iterator
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
    finished: bool = False


@dataclass
class LoadResult:
    participants: list[ParticipantLog]
    seconds: float
    connection_failures: int = 0

    @property
    def acknowledged(self) -> int:
        return sum(len(p.acknowledged) + len(p.recovered) for p in self.participants)

    @property
    def errors(self) -> list[str]:
        return [e for p in self.participants for e in p.errors]


class _Http:
    """One keep-alive HTTP/1.1 connection (the standard library's: a load generator must be
    lighter than the server it measures, and httpx costs several times more CPU per request)."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.connection: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        if self.connection is None:
            self.connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            self.connection.request(method, path, body=data, headers=headers)
            response = self.connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()
            self.connection = None
            raise ConnectionError(f"{method} {path}") from None
        try:
            return response.status, json.loads(payload) if payload else {}
        except ValueError:
            return response.status, {"text": payload[:200].decode(errors="replace")}

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


class _Run:
    def __init__(self, base_url: str, answers: tuple[str, str], deadline: float, seed: int) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port or 80
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
        self, http: _Http, method: str, path: str, body: dict | None = None
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
        http = _Http(self.host, self.port, timeout=30.0)
        try:
            self._participant(http, rng, log)
        except Exception as error:  # reported, not raised: the other threads carry on
            log.errors.append(f"{type(error).__name__}: {error}")
        finally:
            http.close()

    def _participant(self, http: _Http, rng: random.Random, log: ParticipantLog) -> None:
        status, state = self.request(http, "POST", "/api/join", {"consent": True})
        if status != 201:
            log.errors.append(f"join: {status} {state}")
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
            log.acknowledged.append((trial["id"], body["key"]))
            self._count("acked")
            state = reply
        log.finished = True

    def _state(self, http: _Http, log: ParticipantLog, token: str) -> dict:
        status, state = self.request(http, "GET", f"/api/p/{token}")
        if status != 200:
            raise RuntimeError(f"state: {status} {state}")
        log.resumed_at.append((len(log.acknowledged) + len(log.recovered), state["answered"]))
        return state


def simulate(
    base_url: str,
    participants: int,
    *,
    answers: tuple[str, str] = ("left", "right"),
    timeout: float = 120.0,
    seed: int = 0,
    during: Callable[[_Run], None] | None = None,
) -> LoadResult:
    """Run ``participants`` simulated people to the end of their trials, one thread each.

    ``during(run)`` optionally runs alongside them in its own thread (the fault test kills and
    restarts the server from there, watching ``run.acked``).
    """
    run = _Run(base_url.rstrip("/"), answers, time.monotonic() + timeout, seed)
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
    return LoadResult(logs, time.perf_counter() - start, run.connection_failures)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``python -m study serve STUDY`` in a child process on 127.0.0.1."""

    def __init__(
        self,
        study_dir: str | os.PathLike,
        token: str,
        *,
        port: int | None = None,
        database_url: str | None = None,
    ) -> None:
        self.study_dir, self.token = Path(study_dir), token
        self.port = port or free_port()
        self.env = dict(os.environ)
        self.env.pop("DATABASE_URL", None)
        if database_url:
            self.env["DATABASE_URL"] = database_url
        self.process: subprocess.Popen | None = None
        self.log = self.study_dir / "server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> ServerProcess:
        command = [
            sys.executable,
            "-m",
            "study",
            "serve",
            str(self.study_dir),
            "--port",
            str(self.port),
            "--token",
            self.token,
        ]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the study server exited with {self.process.returncode}: {self.log.read_text()[-2000:]}"
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m study.loadtest",
        description="simulated participants against a running study server",
    )
    parser.add_argument("url", help="the server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument(
        "--single", action="store_true", help="the study uses the single-image protocol"
    )
    args = parser.parse_args(argv)
    answers = ("real", "fake") if args.single else ("left", "right")
    result = simulate(args.url, args.participants, answers=answers)
    print(
        f"{result.acknowledged} answers acknowledged in {result.seconds:.1f} s, {len(result.errors)} errors"
    )
    for error in result.errors[:10]:
        print("  " + error)
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
