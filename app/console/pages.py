"""The web console: server-rendered pages over the same reads and actions as the API.

No script: every action is a form post carrying the session's CSRF token, behind
a token entered once on /login (kept as a label in a signed, SameSite=Strict
session cookie). Every text from the ledger goes through Jinja's autoescape and
`printable` (control characters shown as escapes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from app.console.actions import ConsoleActions
from app.console.auth import Access, Caller
from app.console.errors import ConsoleError
from app.console.forms import form_fields, params_from_form
from app.console.schemas import MAX_REASON_CHARS, ErrorBody
from app.console.service import ConsoleReads
from app.core.display import printable

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["printable"] = lambda text: "" if text is None else printable(str(text))
templates.env.filters["when"] = lambda moment: (
    "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")
)
templates.env.filters["ms"] = lambda value: (
    "-" if value is None else (f"{value:.0f} ms" if value < 10_000 else f"{value / 1000:.1f} s")
)


def _state(request: Request) -> tuple[ConsoleReads, ConsoleActions, Access]:
    app = request.app
    return app.state.reads, app.state.actions, app.state.access


def _render(
    request: Request, name: str, context: dict[str, Any], *, status: int = 200
) -> HTMLResponse:
    _, _, access = _state(request)
    caller = access.caller(request)
    flash = request.session.pop("flash", None)
    return templates.TemplateResponse(
        request,
        name,
        {
            "viewer": caller,
            "read_only": access.read_only,
            "csrf": access.csrf_token(request),
            "flash": flash,
            "max_reason": MAX_REASON_CHARS,
            **context,
        },
        status_code=status,
    )


def render_error(request: Request, status: int, body: ErrorBody) -> Response:
    """An error page (401 offers the sign-in form)."""
    return _render(request, "error.html", {"status": status, "error": body}, status=status)


async def _writer(request: Request) -> tuple[Caller, dict[str, Any]]:
    """The form of a post, once its CSRF token and its caller's right to act are checked."""
    _, _, access = _state(request)
    form = dict(await request.form())
    access.check_csrf(request, form.get("csrf"))
    return access.require_write(request), form


def _done(request: Request, message: str, to: str) -> RedirectResponse:
    request.session["flash"] = message
    return RedirectResponse(to, status_code=303)


router = APIRouter(include_in_schema=False)


def mount_pages(app: FastAPI) -> None:
    """Add the pages, their static files and their error page to `app`."""
    app.state.render_error = render_error
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(router)


@router.get("/", response_class=HTMLResponse)
def overview(request: Request) -> HTMLResponse:
    reads, _, access = _state(request)
    access.require_read(request)
    listing = reads.job_list(read_only=access.read_only)
    return _render(request, "overview.html", {"listing": listing})


@router.get("/jobs/{name}", response_class=HTMLResponse)
def job_page(request: Request, name: str, before: int | None = None) -> HTMLResponse:
    return _job_page(request, name, before=before)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: int) -> HTMLResponse:
    reads, _, access = _state(request)
    access.require_read(request)
    run = reads.run(run_id)
    attempts = reads.attempts_of(run)
    return _render(request, "run.html", {"run": run, "attempts": attempts})


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> HTMLResponse:
    return _render(request, "login.html", {"next": request.query_params.get("next", "/")})


@router.post("/login")
async def login(request: Request) -> Response:
    _, _, access = _state(request)
    form = dict(await request.form())
    access.check_csrf(request, form.get("csrf"))
    caller = access.sign_in(request, str(form.get("token", "")))
    target = str(form.get("next", "/"))
    safe = target if target.startswith("/") and not target.startswith("//") else "/"
    return _done(request, f"signed in as {caller.label}", safe)


@router.post("/logout")
async def logout(request: Request) -> Response:
    _, _, access = _state(request)
    form = dict(await request.form())
    access.check_csrf(request, form.get("csrf"))
    request.session.clear()
    return RedirectResponse("/", status_code=303)


@router.post("/jobs/{name}/run")
async def run_now(request: Request, name: str) -> Response:
    reads, actions, _ = _state(request)
    caller, form = await _writer(request)
    configured = reads.configured(name)
    try:
        given = params_from_form(configured.job.params, form)
        status, started = actions.start_run(
            name, given, dry_run=form.get("dry_run") == "on", by=caller.requested_by
        )
    except ConsoleError as exc:
        if exc.status != 400:
            raise
        return _job_page(request, name, refused=exc, form=form, status=400)
    if started.run_id is None:
        return _done(request, f"{name} {started.status}: {started.reason}", f"/jobs/{name}")
    note = "started" if status == 202 else f"{started.status}: {started.reason}"
    return _done(request, f"run {started.run_id} of {name} {note}", f"/runs/{started.run_id}")


@router.post("/jobs/{name}/pause")
async def pause(request: Request, name: str) -> Response:
    _, actions, _ = _state(request)
    caller, form = await _writer(request)
    done = actions.pause(name, _reason(form), by=caller.requested_by)
    return _done(request, done.message, f"/jobs/{name}")


@router.post("/jobs/{name}/resume")
async def resume(request: Request, name: str) -> Response:
    _, actions, _ = _state(request)
    await _writer(request)
    return _done(request, actions.resume(name).message, f"/jobs/{name}")


@router.post("/runs/{run_id}/retry")
async def retry(request: Request, run_id: int) -> Response:
    _, actions, _ = _state(request)
    caller, _ = await _writer(request)
    _, started = actions.retry(run_id, by=caller.requested_by)
    target = f"/runs/{started.run_id}" if started.run_id else f"/runs/{run_id}"
    return _done(request, f"retry of run {run_id}: {started.status}", target)


@router.post("/pause-all")
async def pause_everything(request: Request) -> Response:
    _, actions, _ = _state(request)
    caller, form = await _writer(request)
    done = actions.pause_all(_reason(form), by=caller.requested_by)
    return _done(request, done.message, "/")


@router.post("/resume-all")
async def resume_everything(request: Request) -> Response:
    _, actions, _ = _state(request)
    await _writer(request)
    return _done(request, actions.resume_all().message, "/")


def _reason(form: dict[str, Any]) -> str:
    reason = str(form.get("reason", "")).strip()
    if not reason or len(reason) > MAX_REASON_CHARS:
        raise ConsoleError(400, f"give a reason of 1 to {MAX_REASON_CHARS} characters")
    return reason


def _job_page(
    request: Request,
    name: str,
    *,
    before: int | None = None,
    refused: ConsoleError | None = None,
    form: dict[str, Any] | None = None,
    status: int = 200,
) -> HTMLResponse:
    reads, _, access = _state(request)
    access.require_read(request)
    job = reads.job_detail(name)
    page = reads.runs(name, status=None, before=before, limit=50)
    timeline = reads.timeline(name, start=None, end=None)
    return _render(
        request,
        "job.html",
        {
            "job": job,
            "page": page,
            "timeline": timeline,
            "chart": _chart(page.runs),
            "fields": form_fields(job.params_schema, form, refused),
            "refused": refused,
        },
        status=status,
    )


def _chart(runs: list[Any]) -> list[dict[str, Any]]:
    """Bars for the durations chart: oldest first, heights relative to the longest."""
    timed = [run for run in reversed(runs) if run.duration_ms is not None]
    longest = max((run.duration_ms for run in timed), default=0.0) or 1.0
    return [
        {
            "id": run.id,
            "status": run.status,
            "height": max(2.0, 100.0 * run.duration_ms / longest),
            "label": f"run {run.id}: {run.duration_ms:.0f} ms, {run.status}",
        }
        for run in timed
    ]
