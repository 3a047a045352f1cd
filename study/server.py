"""``python -m study serve``: participant and organiser pages (FastAPI + Jinja2).

Participants hold a secret link ``/p/<token>``; every page under it shows their current trial,
so a reload or a dropped connection resumes where they were. Images are served by trial and
slot (``/p/<token>/img/<trial>/1``), never by a name that could say which one is real. Organiser
pages need the organiser token (``Authorization: Bearer``, or a cookie set by the login form).
A JSON API under ``/api`` does the same for scripted clients (and the load test).
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field, StrictBool, StrictInt, StrictStr

from .db import Database, record_database
from .errors import fail
from .exports import csv_table
from .manifest import Manifest, media_path, read_manifest
from .ratelimit import JoinLimiter
from .service import SESSION_TTL_S, State, StudyService, SubmitResult

HERE = Path(__file__).parent
MAX_BODY_BYTES = 16 * 1024  # answers are tiny; anything bigger is refused before parsing
JOINS_PER_MINUTE = 20  # per client address; a class joining from one network waits seconds
ORGANISER_COOKIE = "study_organiser"
STATUS = {
    "stored": 200,
    "already_recorded": 409,
    "already_answered": 409,
    "not_current": 409,
    "key_reused": 409,
    "not_consented": 409,
    "unknown": 404,
    "invalid": 422,
}


# The participant's token is in the URL: never send it to another site as a referrer.
SECURITY_HEADERS = [
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    # Only this site's own scripts, styles and images; no framing (clickjacking), no plug-ins.
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
]


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``limit`` bytes, declared or streamed (400 for
    a malformed Content-Length); adds :data:`SECURITY_HEADERS` to every response, these
    refusals included.

    The body is read here (it is small by construction) and replayed to the app, so an oversized
    request never reaches a handler and changes nothing.
    """

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    return await self._refuse(send, 400, b"bad Content-Length")
                if declared > self.limit:
                    return await self._refuse(send, 413, b"request body too large")
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return await self._refuse(send, 413, b"request body too large")
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return await self.app(scope, replay, send_with_headers)

    @staticmethod
    async def _refuse(send, status: int, text: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain"),
                    (b"connection", b"close"),
                    *SECURITY_HEADERS,
                ],
            }
        )
        await send({"type": "http.response.body", "body": text})


class JoinBody(BaseModel):
    consent: StrictBool
    # A random key the client keeps until it has the reply: a retried join finds its participant.
    key: StrictStr | None = Field(default=None, max_length=64)
    # The recruitment platform's participant id (else read from the URL's parameters).
    worker: StrictStr | None = Field(default=None, max_length=128)


class ConsentBody(BaseModel):
    consent: StrictBool


class AnswerBody(BaseModel):
    # Strict types: "rt_ms": true is not 1 ms, and "700" is not a number.
    trial: StrictStr = Field(max_length=64)
    answer: StrictStr = Field(max_length=16)
    key: StrictStr = Field(max_length=64)
    rt_ms: StrictInt | None = None


@dataclass
class _Site:
    """What the route handlers share."""

    study_dir: Path
    manifest: Manifest
    service: StudyService
    db: Database
    templates: Jinja2Templates
    organiser_token: str
    secure_cookies: bool | None
    join_limit: JoinLimiter | None
    report_lock: threading.Lock = field(default_factory=threading.Lock)
    cached_report: tuple | None = None  # (answers version, report)

    def page(self, request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
        context.setdefault("study", self.manifest)
        return self.templates.TemplateResponse(request, name, context, status_code=status_code)

    def not_found(self, request: Request, what: str = "This link is not valid.") -> HTMLResponse:
        return self.page(request, "message.html", 404, title="Not found", message=what)

    def join_wait(self, request: Request) -> int:
        """Seconds this client must wait before joining again (0: go ahead)."""
        if self.join_limit is None:
            return 0
        return self.join_limit.retry_after(request.client.host if request.client else "?")

    def report(self):
        """The organiser report, computed once per state of the answers (a page view and its
        chart share it); the bootstrap's memory is bounded (see study.stats)."""
        from .report import report_from_db

        with self.report_lock:
            version = self.service.answers_version()
            if self.cached_report is None or self.cached_report[0] != version:
                report = report_from_db(self.db, self.manifest, reps=1000, seed=self.manifest.seed)
                self.cached_report = (version, report)
            return self.cached_report[1]


def create_app(
    study_dir: str | os.PathLike,
    *,
    organiser_token: str,
    database_url: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    joins_per_minute: float = JOINS_PER_MINUTE,
    secure_cookies: bool | None = None,
    seed: int | None = None,
    release_after_s: float | None = None,
) -> BodyLimit:
    """The web app for one prepared STUDY folder (``.app`` is the FastAPI application).

    ``joins_per_minute``: per client address, across every process serving the study (0: no
    limit). ``secure_cookies``: mark the
    organiser cookie Secure (None: when the request came over HTTPS, e.g. uvicorn behind a TLS
    proxy with ``--proxy-headers``). ``seed`` fixes the allocation's draws (tests only).
    """
    if len(organiser_token) < 12:
        fail("the organiser token must be at least 12 characters")
    manifest = read_manifest(study_dir)
    db = Database.for_study(study_dir, database_url)
    record_database(study_dir, db.url)
    extra = {} if release_after_s is None else {"release_after_s": release_after_s}
    service = StudyService(db, manifest, seed=seed, **extra)
    app = FastAPI(
        title=f"DeepColor study: {manifest.name}", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.service = service
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    site = _Site(
        Path(study_dir),
        manifest,
        service,
        db,
        Jinja2Templates(directory=str(HERE / "templates")),
        organiser_token,
        secure_cookies,
        JoinLimiter(db, service.study_id, joins_per_minute) if joins_per_minute > 0 else None,
    )

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, error: RequestValidationError):
        # FastAPI's own handler echoes the input, and NaN or Infinity in it cannot be encoded
        # as JSON (a 500): report where and what, never the value.
        detail = [
            {"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in error.errors()
        ]
        return JSONResponse({"error": "invalid request", "detail": detail}, status_code=422)

    _participant_pages(app, site)
    _participant_api(app, site)
    _organiser_pages(app, site)
    return BodyLimit(app, max_body_bytes)


NO_WORKER_ID = (
    "This study takes part through a recruitment platform: please open it from the link the "
    "platform gave you (it carries your participant id)."
)


def worker_id_of(manifest: Manifest, request: Request, given: str | None = None) -> str | None:
    """The recruitment platform's participant id: ``given`` (a form or JSON field), else the
    first of the study's URL parameters (``PROLIFIC_PID``, ``workerId``, ...) that is set."""
    if given:
        return given
    for name in manifest.worker_id_params:
        value = request.query_params.get(name)
        if value:
            return value
    return None


def _too_many(site: _Site, request: Request, wait: int, api: bool):
    headers = {"Retry-After": str(wait)}
    message = f"Too many sign-ups from your network just now; try again in {wait} s."
    if api:
        return JSONResponse({"error": message}, status_code=429, headers=headers)
    response = site.page(request, "message.html", 429, title="Please wait", message=message)
    response.headers.update(headers)
    return response


def _participant_pages(app: FastAPI, site: _Site) -> None:
    manifest, service = site.manifest, site.service

    def consent_page(request: Request, action: str, status_code: int = 200, **context):
        key = secrets.token_urlsafe(16) if action == "/join" else None
        return site.page(
            request, "consent.html", status_code, action=action, join_key=key, **context
        )

    def no_worker_id(request: Request) -> HTMLResponse:
        return site.page(
            request, "message.html", 400, title="Participant id needed", message=NO_WORKER_ID
        )

    def trial_page(request: Request, token: str) -> HTMLResponse:
        state = service.state(token)
        if state is None:
            return site.not_found(request)
        if not state.consented:
            return consent_page(request, f"/p/{token}/consent")
        if state.done:
            return site.page(request, "done.html", state=state)
        return site.page(
            request,
            "trial.html",
            state=state,
            trial=state.trial,
            token=token,
            key=secrets.token_urlsafe(16),
            exposure_ms=manifest.exposure_ms,
        )

    @app.get("/", response_class=HTMLResponse)
    def home(request: Request):
        return site.page(request, "home.html")

    @app.get("/join", response_class=HTMLResponse)
    def join_form(request: Request):
        if not manifest.open_signup:
            return site.not_found(request, "This study is by invitation only.")
        worker = worker_id_of(manifest, request)
        if worker is None and manifest.require_worker_id:
            return no_worker_id(request)
        return consent_page(request, "/join", worker=worker)

    @app.post("/join")
    def join(
        request: Request,
        consent: str = Form(""),
        key: str = Form("", max_length=64),
        worker: str = Form("", max_length=128),
    ):
        if not manifest.open_signup:
            return site.not_found(request, "This study is by invitation only.")
        worker_id = worker_id_of(manifest, request, worker or None)
        if worker_id is None and manifest.require_worker_id:
            return no_worker_id(request)
        if consent != "yes":
            return consent_page(
                request, "/join", 400, worker=worker_id, error="Please tick the box to take part."
            )
        wait = site.join_wait(request)
        if wait:
            return _too_many(site, request, wait, api=False)
        try:
            token, _ = service.join(key=key or None, worker_id=worker_id)
        except ValueError as error:
            return consent_page(request, "/join", 422, worker=worker_id, error=str(error))
        return RedirectResponse(f"/p/{token}", status_code=303)

    @app.get("/p/{token}", response_class=HTMLResponse)
    def participant_page(request: Request, token: str):
        return trial_page(request, token)

    @app.post("/p/{token}/consent")
    def give_consent(request: Request, token: str, consent: str = Form("")):
        if service.state(token) is None:
            return site.not_found(request)
        if consent != "yes":
            return consent_page(
                request, f"/p/{token}/consent", 400, error="Please tick the box to take part."
            )
        service.consent(token)
        return RedirectResponse(f"/p/{token}", status_code=303)

    @app.post("/p/{token}/answer")
    def answer_form(
        request: Request,
        token: str,
        trial: str = Form(..., max_length=64),
        answer: str = Form(..., max_length=16),
        key: str = Form(..., max_length=64),
        rt_ms: int | None = Form(None),
    ):
        result = service.submit(token, trial, answer, key, rt_ms)
        if result.ok or result.status == "already_recorded":
            # A replayed form (back button, double send) was stored the first time: go on. Only
            # a replay needs to ask whether the trial was practice; a stored answer says so.
            if result.ok:
                practice = result.correct is not None
            else:
                practice = service.feedback(token, trial) is not None
            target = f"/p/{token}/feedback/{trial}" if practice else f"/p/{token}"
            return RedirectResponse(target, status_code=303)
        if result.status == "unknown":
            return site.not_found(request)
        return site.page(
            request,
            "message.html",
            STATUS[result.status],
            title="Answer not stored",
            message=result.message,
            link=f"/p/{token}" if service.state(token) else None,
        )

    @app.get("/p/{token}/feedback/{trial}", response_class=HTMLResponse)
    def feedback(request: Request, token: str, trial: str):
        result = service.feedback(token, trial)
        if result is None:
            return site.not_found(request)
        return site.page(
            request, "feedback.html", result=result, token=token, protocol=manifest.protocol
        )

    @app.get("/p/{token}/img/{trial}/{slot}")
    def image(token: str, trial: str, slot: str):
        found = service.image(token, trial, slot)
        if found.status == "gone":
            return Response(
                "the photos of this trial were shown already", 410, media_type="text/plain"
            )
        if found.status != "ok":
            return Response("not found", status_code=404, media_type="text/plain")
        # Every image of a trial is the same size (uncompressed PNG of one photo's pixels) and
        # gets the same headers: no ETag or Last-Modified, and no caching (Cache-Control:
        # no-store is added to every response), so it cannot be looked at again later.
        data = media_path(site.study_dir, found.media_id).read_bytes()
        return Response(data, media_type="image/png")


def _participant_api(app: FastAPI, site: _Site) -> None:
    manifest, service = site.manifest, site.service

    def state_json(state: State) -> dict:
        trial = state.trial
        return {
            "token": state.token,
            "consented": state.consented,
            "answered": state.answered,
            "total": state.total,
            "done": state.done,
            "trial": None
            if trial is None
            else {
                "id": trial.public_id,
                "phase": trial.phase,
                "number": trial.number,
                "images": [f"/p/{state.token}/img/{trial.public_id}/{s}" for s in trial.slots],
                "answers": list(service.answers),
                "exposure_ms": manifest.exposure_ms,
            },
        }

    # JSONResponse directly: FastAPI's generic encoder is measurable at load-test rates.
    @app.post("/api/join")
    def api_join(request: Request, body: JoinBody):
        if not manifest.open_signup:
            return JSONResponse({"error": "this study is by invitation only"}, status_code=403)
        if not body.consent:
            return JSONResponse({"error": "consent is required"}, status_code=400)
        worker_id = worker_id_of(manifest, request, body.worker)
        if worker_id is None and manifest.require_worker_id:
            return JSONResponse({"error": NO_WORKER_ID}, status_code=400)
        wait = site.join_wait(request)
        if wait:
            return _too_many(site, request, wait, api=True)
        try:
            token, created = service.join(key=body.key, worker_id=worker_id)
        except ValueError as error:
            return JSONResponse({"error": str(error)}, status_code=422)
        return JSONResponse(state_json(service.state(token)), status_code=201 if created else 200)

    @app.post("/api/p/{token}/consent")
    def api_consent(token: str, body: ConsentBody):
        if not body.consent:
            return JSONResponse({"error": "consent is required"}, status_code=400)
        if not service.consent(token):
            return JSONResponse({"error": "unknown participant"}, status_code=404)
        return JSONResponse(state_json(service.state(token)))

    @app.get("/api/p/{token}")
    def api_state(token: str):
        state = service.state(token)
        if state is None:
            return JSONResponse({"error": "unknown participant"}, status_code=404)
        return JSONResponse(state_json(state))

    @app.post("/api/p/{token}/answer")
    def api_answer(token: str, body: AnswerBody):
        result: SubmitResult = service.submit(token, body.trial, body.answer, body.key, body.rt_ms)
        if not result.ok:
            return JSONResponse(
                {"status": result.status, "error": result.message},
                status_code=STATUS[result.status],
            )
        payload = {"status": "stored", **state_json(result.state)}
        if result.correct is not None:  # practice: feedback
            payload["feedback"] = {"correct": result.correct}
        return JSONResponse(payload)


def _organiser_pages(app: FastAPI, site: _Site) -> None:
    manifest, service = site.manifest, site.service

    def authorised(request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return hmac.compare_digest(header[7:].strip().encode(), site.organiser_token.encode())
        return service.session_valid(request.cookies.get(ORGANISER_COOKIE, ""))

    def login_page(request: Request, status_code: int = 401, error: str | None = None):
        return site.page(request, "login.html", status_code, error=error)

    @app.get("/organiser/login", response_class=HTMLResponse)
    def login_form(request: Request):
        return site.page(request, "login.html")

    @app.post("/organiser/login")
    def login(request: Request, token: str = Form("", max_length=256)):
        if not hmac.compare_digest(token.encode(), site.organiser_token.encode()):
            return login_page(request, 401, "Wrong token.")
        response = RedirectResponse("/organiser", status_code=303)
        secure = site.secure_cookies
        if secure is None:
            secure = request.url.scheme == "https"
        # The cookie is a session id (its hash is stored, with an expiry), never the token.
        response.set_cookie(
            ORGANISER_COOKIE,
            service.open_session(),
            max_age=int(SESSION_TTL_S),
            httponly=True,
            secure=secure,
            samesite="strict",
        )
        return response

    @app.post("/organiser/logout")
    def logout(request: Request):
        service.close_session(request.cookies.get(ORGANISER_COOKIE, ""))
        response = RedirectResponse("/organiser/login", status_code=303)
        response.delete_cookie(ORGANISER_COOKIE, httponly=True, samesite="strict")
        return response

    @app.get("/organiser", response_class=HTMLResponse)
    def organiser(request: Request):
        if not authorised(request):
            return login_page(request)
        return site.page(
            request,
            "organiser.html",
            report=site.report(),
            counts=service.participation(),
            signup_url=str(request.base_url) + "join",
            invites=None,
        )

    @app.post("/organiser/invites", response_class=HTMLResponse)
    def invites(
        request: Request,
        count: int = Form(..., ge=1, le=500),
        label: str = Form("", max_length=200),
    ):
        if not authorised(request):
            return login_page(request)
        tokens = service.create_invites(count, label or None)
        links = [str(request.base_url) + f"p/{t}" for t in tokens]
        return site.page(request, "invites.html", links=links)

    @app.get("/organiser/summary.json")
    def summary_json(request: Request):
        if not authorised(request):
            return JSONResponse({"error": "organiser token required"}, status_code=401)
        report = site.report()
        return {
            "protocol": manifest.protocol,
            "participation": service.participation(),
            "models": report.models.astype(object)
            .where(report.models.notna(), None)
            .to_dict(orient="records"),
            "excluded": len(report.excluded),
        }

    @app.get("/organiser/{name}.csv")
    def csv(request: Request, name: str):
        if not authorised(request):
            return Response("organiser token required", status_code=401, media_type="text/plain")
        report = site.report()
        tables = {
            "acceptance": report.models,
            "photos": report.photos,
            "sentinels": report.sentinels,
            "responses": report.responses,
        }
        if name not in tables:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(
            csv_table(tables[name]),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )

    @app.get("/organiser/chart.png")
    def chart(request: Request):
        if not authorised(request):
            return Response("organiser token required", status_code=401, media_type="text/plain")
        import io

        from .report import plot

        buffer = io.BytesIO()
        plot(site.report(), buffer)
        return Response(buffer.getvalue(), media_type="image/png")


def serve(
    study_dir: str | os.PathLike,
    *,
    host: str,
    port: int,
    organiser_token: str,
    database_url: str | None = None,
    **options,
) -> None:
    """Run the app with uvicorn; ``options`` go to :func:`create_app`."""
    import uvicorn

    app = create_app(
        study_dir, organiser_token=organiser_token, database_url=database_url, **options
    )
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
