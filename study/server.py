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
from pathlib import Path

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from .db import Database
from .manifest import media_path, read_manifest
from .service import State, StudyService, SubmitResult

HERE = Path(__file__).parent
MAX_BODY_BYTES = 16 * 1024  # answers are tiny; anything bigger is refused before parsing
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
]


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``limit`` bytes, declared or streamed; adds
    :data:`SECURITY_HEADERS` to every response.

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
                "headers": [(b"content-type", b"text/plain"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": text})


class JoinBody(BaseModel):
    consent: bool


class AnswerBody(BaseModel):
    trial: str = Field(max_length=64)
    answer: str = Field(max_length=16)
    key: str = Field(max_length=64)
    rt_ms: int | None = None


def create_app(
    study_dir: str | os.PathLike,
    *,
    organiser_token: str,
    database_url: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> BodyLimit:
    """The web app for one prepared STUDY folder (``.app`` is the FastAPI application)."""
    if len(organiser_token) < 12:
        from .manifest import fail

        fail("the organiser token must be at least 12 characters")
    manifest = read_manifest(study_dir)
    db = Database.for_study(study_dir, database_url)
    service = StudyService(db, manifest)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app = FastAPI(
        title=f"DeepColor study: {manifest.name}", docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.service = service
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def page(request: Request, name: str, status_code: int = 200, **context) -> HTMLResponse:
        context.setdefault("study", manifest)
        return templates.TemplateResponse(request, name, context, status_code=status_code)

    def not_found(request: Request, what: str = "This link is not valid.") -> HTMLResponse:
        return page(request, "message.html", 404, title="Not found", message=what)

    def trial_page(request: Request, token: str) -> HTMLResponse:
        state = service.state(token)
        if state is None:
            return not_found(request)
        if not state.consented:
            return page(request, "consent.html", action=f"/p/{token}/consent")
        if state.done:
            return page(request, "done.html", state=state)
        return page(
            request,
            "trial.html",
            state=state,
            trial=state.trial,
            token=token,
            key=secrets.token_urlsafe(16),
            exposure_ms=manifest.exposure_ms,
        )

    # --- participants (HTML) ------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse)
    def home(request: Request):
        return page(request, "home.html")

    @app.get("/join", response_class=HTMLResponse)
    def join_form(request: Request):
        if not manifest.open_signup:
            return not_found(request, "This study is by invitation only.")
        return page(request, "consent.html", action="/join")

    @app.post("/join")
    def join(request: Request, consent: str = Form("")):
        if not manifest.open_signup:
            return not_found(request, "This study is by invitation only.")
        if consent != "yes":
            return page(
                request,
                "consent.html",
                400,
                action="/join",
                error="Please tick the box to take part.",
            )
        token = service.create_participant(source="signup", consented=True)
        return RedirectResponse(f"/p/{token}", status_code=303)

    @app.get("/p/{token}", response_class=HTMLResponse)
    def participant_page(request: Request, token: str):
        return trial_page(request, token)

    @app.post("/p/{token}/consent")
    def give_consent(request: Request, token: str, consent: str = Form("")):
        if service.state(token) is None:
            return not_found(request)
        if consent != "yes":
            return page(
                request,
                "consent.html",
                400,
                action=f"/p/{token}/consent",
                error="Please tick the box to take part.",
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
        if result.ok:
            target = f"/p/{token}/feedback/{trial}" if result.correct is not None else f"/p/{token}"
            return RedirectResponse(target, status_code=303)
        if result.status == "unknown":
            return not_found(request)
        return page(
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
            return not_found(request)
        return page(
            request, "feedback.html", result=result, token=token, protocol=manifest.protocol
        )

    @app.get("/p/{token}/img/{trial}/{slot}")
    def image(token: str, trial: str, slot: str):
        media_id = service.image(token, trial, slot)
        if media_id is None:
            return Response("not found", status_code=404, media_type="text/plain")
        # Plain bytes, no Last-Modified or ETag: file times could hint at the order of rendering.
        data = media_path(study_dir, media_id).read_bytes()
        return Response(
            data, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
        )

    # --- participants (JSON) ------------------------------------------------------------------
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
    def api_join(body: JoinBody):
        if not manifest.open_signup:
            return JSONResponse({"error": "this study is by invitation only"}, status_code=403)
        if not body.consent:
            return JSONResponse({"error": "consent is required"}, status_code=400)
        token = service.create_participant(source="signup", consented=True)
        return JSONResponse(state_json(service.state(token)), status_code=201)

    @app.post("/api/p/{token}/consent")
    def api_consent(token: str, body: JoinBody):
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

    # --- organiser ----------------------------------------------------------------------------
    def authorised(request: Request) -> bool:
        supplied = request.cookies.get(ORGANISER_COOKIE, "")
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            supplied = header[7:].strip()
        return hmac.compare_digest(supplied.encode(), organiser_token.encode())

    def login_page(
        request: Request, status_code: int = 401, error: str | None = None
    ) -> HTMLResponse:
        return page(request, "login.html", status_code, error=error)

    @app.get("/organiser/login", response_class=HTMLResponse)
    def login_form(request: Request):
        return page(request, "login.html")

    @app.post("/organiser/login")
    def login(request: Request, token: str = Form("", max_length=256)):
        if not hmac.compare_digest(token.encode(), organiser_token.encode()):
            return login_page(request, 401, "Wrong token.")
        response = RedirectResponse("/organiser", status_code=303)
        response.set_cookie(ORGANISER_COOKIE, organiser_token, httponly=True, samesite="strict")
        return response

    def compute_report():
        from .report import report_from_db

        return report_from_db(db, manifest, reps=1000, seed=manifest.seed)

    @app.get("/organiser", response_class=HTMLResponse)
    def organiser(request: Request):
        if not authorised(request):
            return login_page(request)
        report = compute_report()
        return page(
            request,
            "organiser.html",
            report=report,
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
        return page(request, "invites.html", links=links)

    @app.get("/organiser/summary.json")
    def summary_json(request: Request):
        if not authorised(request):
            return JSONResponse({"error": "organiser token required"}, status_code=401)
        report = compute_report()
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
        report = compute_report()
        tables = {
            "acceptance": report.models,
            "photos": report.photos,
            "sentinels": report.sentinels,
            "responses": report.responses,
        }
        if name not in tables:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(
            tables[name].to_csv(index=False),
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
        plot(compute_report(), buffer)
        return Response(buffer.getvalue(), media_type="image/png")

    return BodyLimit(app, max_body_bytes)


def serve(
    study_dir: str | os.PathLike,
    *,
    host: str,
    port: int,
    organiser_token: str,
    database_url: str | None = None,
) -> None:
    import uvicorn

    app = create_app(study_dir, organiser_token=organiser_token, database_url=database_url)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
