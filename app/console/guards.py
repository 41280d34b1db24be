"""What stands between a request and the console: a body cap, the content type, safe
headers, and one shape for every error (JSON under /api, a page elsewhere).

Bad input is always a 4xx with a message that says what was wrong; an unexpected
error is a 500 with a generic message (the details go to the log, never the caller).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.console.errors import ConsoleError
from app.console.schemas import ErrorBody, FieldError
from app.errors import CronlockError, DatabaseError, ValueRefused

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
_WITH_BODY = {"POST", "PUT", "PATCH", "DELETE"}
_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"frame-ancestors 'none'; form-action 'self'",
    ),
]


class GuardMiddleware:
    """Caps request bodies, requires JSON on the API's bodies, adds safe headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + _HEADERS
            await send(message)

        if scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send_with_headers)
            return
        body, refusal = await _read_body(scope, receive)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # the disconnect, when it comes
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send_with_headers)


async def _read_body(scope: Scope, receive: Receive) -> tuple[bytes, Response | None]:
    """The whole body (at most MAX_BODY_BYTES), or the response that refuses it."""
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    api = scope["path"].startswith("/api/")
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return b"", _refuse(api, 413, f"the body is over {MAX_BODY_BYTES} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return b"", _refuse(api, 413, f"the body is over {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if api and body.strip() and content_type != "application/json":
        return body, _refuse(
            api, 415, f"send the body as application/json, not {content_type or 'no type'}"
        )
    return body, None


def _refuse(api: bool, status: int, message: str) -> Response:
    if api:
        return JSONResponse(ErrorBody(error=message).model_dump(), status_code=status)
    return HTMLResponse(f"<p>{status}: {message}</p>", status_code=status)


def error_response(request: Request, status: int, body: ErrorBody) -> Response:
    """An error as the caller reads it: JSON for the API, the console's page otherwise."""
    if request.url.path.startswith("/api/") or not hasattr(request.app.state, "render_error"):
        # ASCII escapes: a refused value is echoed back, and JSON may carry a lone
        # surrogate ("\ud800") that UTF-8 cannot encode.
        return Response(
            json.dumps(body.model_dump(mode="json"), separators=(",", ":")),
            status_code=status,
            media_type="application/json",
            headers={"WWW-Authenticate": "Bearer"} if status == 401 else None,
        )
    response: Response = request.app.state.render_error(request, status, body)
    return response


def _field_errors(errors: list[dict[str, Any]]) -> list[FieldError]:
    found = []
    for error in errors:
        location = [str(part) for part in error.get("loc", ())]
        if location and location[0] in ("body", "query", "path", "header"):
            location = location[1:]
        value = error.get("input")
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            value = repr(value)
        found.append(
            FieldError(field=".".join(location) or "(body)", value=value, message=error["msg"])
        )
    return found


def _said(exc: BaseException) -> str:
    """What the database said of a refused value (not where the database is)."""
    cause = exc.__cause__
    said = str(getattr(cause, "orig", None) or cause or "").strip().splitlines()
    return said[0] if said else "the database refused it"


def install_error_handlers(app: FastAPI) -> None:
    """Every error the console can meet, answered in one shape."""

    @app.exception_handler(ConsoleError)
    async def refused(request: Request, exc: ConsoleError) -> Response:
        return error_response(request, exc.status, ErrorBody(error=exc.message, fields=exc.fields))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            detail = next(e for e in errors if e.get("type") == "json_invalid")
            message = f"the body is not valid JSON: {detail.get('ctx', {}).get('error', '')}"
            return error_response(request, 400, ErrorBody(error=message.rstrip(": ")))
        return error_response(
            request,
            400,
            ErrorBody(error="the request was refused; see `fields`", fields=_field_errors(errors)),
        )

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        message = {404: "no such route; /api/openapi.json lists them"}.get(
            exc.status_code, str(exc.detail)
        )
        return error_response(request, exc.status_code, ErrorBody(error=message))

    @app.exception_handler(ValueRefused)
    async def unstorable(request: Request, exc: ValueRefused) -> Response:
        # A value of the request the database cannot store (a NUL character in text):
        # sent again it fails again, so it is the caller's to fix, not a 503 to retry.
        return error_response(
            request, 400, ErrorBody(error=f"a value of the request cannot be stored: {_said(exc)}")
        )

    @app.exception_handler(CronlockError)
    async def unavailable(request: Request, exc: CronlockError) -> Response:
        if isinstance(exc, DatabaseError):
            # The log says which database and why; the caller learns only to try again.
            logger.warning(
                "the console could not reach the database: %s",
                exc.message,
                extra={"event": "console_database_unavailable", "path": request.url.path},
            )
            message = "cronlock cannot reach its database now; try again shortly"
        else:
            message = f"cronlock cannot answer now: {exc.message}"
        return error_response(request, 503, ErrorBody(error=message))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        logger.error(
            "the console failed on %s %s",
            request.method,
            request.url.path,
            exc_info=exc,
            extra={"event": "console_error", "path": request.url.path},
        )
        return error_response(
            request, 500, ErrorBody(error="internal error; the server's log has the details")
        )
