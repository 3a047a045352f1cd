"""The study server's footprint and its join latency: idle memory, and 50 people joining at once.

Targets: the server idles at <= 200 MB resident (it never imports torch); 50 simultaneous joins
(each plans 40 trials) reach p99 <= 1.5 s on PostgreSQL. Figures are printed, never asserted.

    .venv/bin/python bench/study_server.py [--joins 50] [--trials 40] [--postgres URL]

``--postgres`` defaults to ``$DATABASE_URL_TEST``; without it only SQLite is measured.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from study.acceptance import prepare_template, sqlite_url  # noqa: E402
from study.simulate import HttpClient, ServerProcess, client_address, postgres_schema  # noqa: E402

TOKEN = "bench-organiser-token"


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def simultaneous_joins(url: str, joins: int) -> tuple[list[float], dict[int, int]]:
    """``joins`` clients (one address each) released at once; seconds per join, statuses."""
    port = int(url.rsplit(":", 1)[1])
    barrier = threading.Barrier(joins)
    seconds: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def one(index: int) -> None:
        http = HttpClient("127.0.0.1", port, 60.0, client_address(4, index))
        try:
            http.raw("GET", "/")  # connect first: the join alone is timed
            barrier.wait()
            started = time.perf_counter()
            status, _ = http.raw("POST", "/api/join", {"consent": True})
            elapsed = time.perf_counter() - started
        finally:
            http.close()
        with lock:
            seconds.append(elapsed)
            statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=one, args=(i,)) for i in range(joins)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(seconds), statuses


def percentile(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def measure(label: str, template: Path, root: Path, url: str | None, joins: int) -> None:
    folder = root / label
    shutil.copytree(template, folder)
    with ServerProcess(folder, TOKEN, database_url=url or sqlite_url(folder)) as server:
        time.sleep(2.0)
        idle = resident_mb(server.process.pid)
        rounds = []
        for _ in range(3):
            seconds, statuses = simultaneous_joins(server.url, joins)
            rounds.append((seconds, statuses))
        busy = resident_mb(server.process.pid)
    print(f"{label}: idle {idle:.0f} MB resident, {busy:.0f} MB after {3 * joins} joins")
    for seconds, statuses in rounds:
        print(
            f"  {joins} simultaneous joins: p50 {percentile(seconds, 50) * 1000:.0f} ms, "
            f"p99 {percentile(seconds, 99) * 1000:.0f} ms, max {seconds[-1] * 1000:.0f} ms; "
            f"statuses {statuses}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--joins", type=int, default=50)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--postgres", default=os.environ.get("DATABASE_URL_TEST"))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="study-bench-"))
    try:
        template = prepare_template(root, args.trials)
        measure("SQLite", template, root, None, args.joins)
        if args.postgres:
            with postgres_schema(args.postgres) as url:
                measure("PostgreSQL", template, root, url, args.joins)
        else:
            print("PostgreSQL: skipped (give --postgres URL or set DATABASE_URL_TEST)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
