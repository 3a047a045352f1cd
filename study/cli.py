"""``python -m study prepare | audit | serve | report``; errors are printed as messages, not tracebacks."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

from .errors import StudyError, fail
from .manifest import WORKER_ID_PARAMS, read_manifest


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m study", description="DeepColor's real-vs-colourised user study"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    prepare = commands.add_parser("prepare", help="colourise the photos and create a STUDY folder")
    prepare.add_argument("--images", required=True, help="folder of colour photos")
    prepare.add_argument(
        "--models",
        required=True,
        help="comma-separated model names (see `deepcolor models`); `oracle` adds the control: "
        "the original's own colour through the same bottleneck and treatment",
    )
    prepare.add_argument("--out", required=True, help="the new STUDY folder")
    prepare.add_argument(
        "--protocol",
        choices=("2afc", "single"),
        default="2afc",
        help="2afc: which one is fake? single: real or colourised? (default 2afc)",
    )
    prepare.add_argument(
        "--allocation",
        choices=("mixed", "per-model"),
        default="mixed",
        help="every model for everyone, or one model per participant",
    )
    prepare.add_argument(
        "--trials",
        type=int,
        default=40,
        help="test trials per participant, sentinels included (default 40)",
    )
    prepare.add_argument(
        "--practice", type=int, default=2, help="practice trials with feedback (default 2)"
    )
    prepare.add_argument(
        "--sentinel-rate",
        type=float,
        default=0.1,
        help="share of test trials that are sentinels (default 0.1)",
    )
    prepare.add_argument(
        "--sentinel-threshold",
        type=float,
        default=0.8,
        help="exclude participants below this sentinel accuracy (default 0.8); the sentinel "
        "count is raised until a random clicker passes at most 5%% of the time",
    )
    prepare.add_argument(
        "--allow-repeats",
        action="store_true",
        help="let a participant see a photo more than once when there are fewer photos than "
        "trials (they then judge it from memory: the original is the one seen before)",
    )
    prepare.add_argument(
        "--exposure-ms",
        type=int,
        default=None,
        help="show the photos only this long (e.g. 1000); answers stay untimed",
    )
    prepare.add_argument(
        "--invite-only",
        action="store_true",
        help="no open sign-up page; participants need an invitation link",
    )
    prepare.add_argument(
        "--worker-id-param",
        default=",".join(WORKER_ID_PARAMS),
        help="URL parameters carrying a recruitment platform's participant id, comma-separated "
        "(default PROLIFIC_PID,workerId): a second visit with the same id resumes the same "
        "session and draws no new trials",
    )
    prepare.add_argument(
        "--require-worker-id",
        action="store_true",
        help="refuse to sign up anyone who comes without such an id",
    )
    prepare.add_argument(
        "--max-side",
        type=int,
        default=512,
        help="longest side of the shown photos in pixels (default 512)",
    )
    prepare.add_argument(
        "--name", default=None, help="the study's title (default: the folder name)"
    )
    prepare.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    prepare.add_argument("--seed", type=int, default=0, help="seed of the report's bootstrap")
    prepare.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads while colourising (default: torch's choice)",
    )

    audit = commands.add_parser(
        "audit",
        help="check that no script can tell the stimuli apart without judging colour "
        "(exits 1 if one can)",
    )
    audit.add_argument("study", help="a STUDY folder made by `prepare`")

    serve = commands.add_parser("serve", help="run the participant and organiser pages")
    serve.add_argument("study", help="a STUDY folder made by `prepare`")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only; 0.0.0.0 for all)",
    )
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    serve.add_argument(
        "--token-file",
        default=None,
        help="file holding the organiser token (default: $STUDY_ORGANISER_TOKEN, else a new "
        "one is printed)",
    )
    serve.add_argument("--token", default=None, help=argparse.SUPPRESS)  # refused: see _serve
    serve.add_argument(
        "--joins-per-minute",
        type=float,
        default=20,
        help="sign-ups allowed per client address and minute, 0 for no limit (default 20)",
    )
    serve.add_argument(
        "--release-after",
        type=float,
        default=30,
        help="minutes without an answer after which a participant's planned trials are "
        "released to others (default 30); they can still come back and finish",
    )
    serve.add_argument(
        "--secure-cookies",
        action="store_true",
        help="mark the organiser cookie Secure (behind a TLS proxy that does not send "
        "X-Forwarded-Proto); over HTTPS it is Secure anyway",
    )

    report = commands.add_parser("report", help="acceptance rates, intervals, CSV and a chart")
    report.add_argument("study", help="a STUDY folder")
    report.add_argument(
        "--out", default=None, help="where to write CSV and PNG files (default: STUDY/report)"
    )
    report.add_argument(
        "--reps", type=int, default=2000, help="bootstrap replicates (default 2000)"
    )
    report.add_argument(
        "--database-url",
        default=None,
        help="the database holding the answers (default: $DATABASE_URL, else the one the "
        "study folder records from prepare/serve)",
    )
    return parser


def _prepare(args) -> int:
    from .prepare import prepare_study

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    manifest = prepare_study(
        args.images,
        models,
        args.out,
        protocol=args.protocol,
        allocation=args.allocation,
        test_trials=args.trials,
        practice_trials=args.practice,
        sentinel_rate=args.sentinel_rate,
        sentinel_threshold=args.sentinel_threshold,
        exposure_ms=args.exposure_ms,
        open_signup=not args.invite_only,
        max_side=args.max_side,
        name=args.name,
        device=args.device,
        seed=args.seed,
        torch_threads=args.threads,
        allow_repeats=args.allow_repeats,
        worker_id_params=[p.strip() for p in args.worker_id_param.split(",") if p.strip()],
        require_worker_id=args.require_worker_id,
    )
    print(
        f"prepared {args.out}: {len(manifest.photos)} photos x {len(manifest.models)} models "
        f"({len(manifest.stimuli)} images), protocol {manifest.protocol}\n"
        f"next: python -m study serve {args.out}"
    )
    return 0


def _audit(args) -> int:
    from .audit import audit_study, format_audit

    read_manifest(args.study)  # a clear message for a folder that is not a study
    result = audit_study(args.study)
    print(format_audit(result))
    print("audit: passed" if result.ok else "audit: FAILED")
    return 0 if result.ok else 1


def _organiser_token(args) -> str:
    if args.token is not None:
        fail(
            "--token would show the organiser token to every user of this machine (ps); "
            "put it in STUDY_ORGANISER_TOKEN or in a file given with --token-file"
        )
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            fail(f"cannot read the organiser token from {args.token_file}: {error.strerror}")
    else:
        token = os.environ.get("STUDY_ORGANISER_TOKEN", "")
    if not token:
        token = secrets.token_urlsafe(18)
        print(f"organiser token: {token}", flush=True)
    elif len(token) < 12:
        fail("the organiser token must be at least 12 characters")
    return token


def _serve(args) -> int:
    from .server import serve

    read_manifest(args.study)  # a clear message before anything starts
    token = _organiser_token(args)
    print(
        f"participants: http://{args.host}:{args.port}/join   organiser: http://{args.host}:{args.port}/organiser",
        flush=True,
    )
    serve(
        args.study,
        host=args.host,
        port=args.port,
        organiser_token=token,
        joins_per_minute=args.joins_per_minute,
        release_after_s=args.release_after * 60,
        secure_cookies=True if args.secure_cookies else None,
    )
    return 0


def _report(args) -> int:
    from .report import format_table, report_for, write_report

    report = report_for(args.study, database_url=args.database_url, reps=args.reps)
    paths = write_report(report, args.out or Path(args.study) / "report")
    print(format_table(report))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {"prepare": _prepare, "audit": _audit, "serve": _serve, "report": _report}
    try:
        return handlers[args.command](args)
    except Exception as error:  # only our own errors become messages; others keep their traceback
        # deepcolor's errors only come from `prepare`, which has imported deepcolor already.
        library = sys.modules.get("deepcolor.errors")
        if isinstance(error, StudyError) or (
            library is not None and isinstance(error, library.DeepColorError)
        ):
            print(f"error: {error}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
