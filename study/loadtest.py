"""``python -m study.loadtest``: check a deployment before real people arrive.

``python -m study.loadtest URL --participants 50`` runs simulated participants against a running
server. Without a URL it prepares a study of its own and runs the acceptance checks end to end
(see :mod:`study.acceptance`): the image leak audit, 50 participants x 40 trials beside a join
flood, and, with ``--postgres URL`` (or ``$DATABASE_URL_TEST``), the same load split across two
server processes on one PostgreSQL database. The test suite uses the same code.
"""

from __future__ import annotations

import argparse
import os
import sys

from .acceptance import run_acceptance
from .simulate import simulate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m study.loadtest",
        description="simulated participants against a running study server, or (without a URL) "
        "the study's acceptance checks on a study prepared for the purpose",
    )
    parser.add_argument("url", nargs="?", help="a running server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument(
        "--single", action="store_true", help="the study uses the single-image protocol"
    )
    parser.add_argument("--trials", type=int, default=40, help="trials per participant (local)")
    parser.add_argument("--flood-threads", type=int, default=4, help="hostile clients (local)")
    parser.add_argument("--flood-joins", type=int, default=2500, help="joins each (local)")
    parser.add_argument(
        "--audit-participants", type=int, default=10, help="participants of the leak audit"
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("DATABASE_URL_TEST"),
        help="PostgreSQL URL for the two-process run (default: $DATABASE_URL_TEST)",
    )
    args = parser.parse_args(argv)
    if args.url is None:
        return run_acceptance(args)
    answers = ("real", "fake") if args.single else ("left", "right")
    result = simulate(args.url, args.participants, answers=answers)
    p50, p90, p99 = result.latency_ms(50, 90, 99)
    print(
        f"{result.acknowledged} answers acknowledged in {result.seconds:.1f} s, "
        f"{len(result.errors)} errors; answer latency p50/p90/p99 {p50:.0f}/{p90:.0f}/{p99:.0f} ms"
    )
    for error in result.errors[:10]:
        print("  " + error)
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
