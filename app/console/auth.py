"""Who is asking: bearer tokens for the API, a signed session cookie for the pages.

Mutations need a CONSOLE_TOKEN; reads need a CONSOLE_READ_TOKEN (or a console
token) when read tokens are set, and nothing otherwise. Tokens are compared in
constant time (`app.core.tokens.match_token`). The pages keep the token's label
in a session cookie signed with a key derived from the configured tokens, so
rotating a token ends every session; each session carries its own CSRF token,
which every form posts back.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from starlette.requests import Request

from app.config import Settings
from app.console.errors import ConsoleError
from app.core.tokens import match_token

SESSION_COOKIE = "cronlock_console"


@dataclass(frozen=True)
class Caller:
    """Who made a request, as far as the console can tell."""

    label: str | None = None
    can_write: bool = False
    can_read: bool = False

    @property
    def requested_by(self) -> str:
        """What the ledger records for this caller's actions."""
        return f"console:{self.label}"


class Access:
    """The console's tokens and how a request proves it holds one."""

    def __init__(self, settings: Settings) -> None:
        self.write_tokens = settings.console_tokens
        self.read_tokens = settings.console_read_tokens

    @property
    def read_only(self) -> bool:
        """No CONSOLE_TOKEN: nobody can act through the console."""
        return not self.write_tokens

    @property
    def reads_open(self) -> bool:
        """No CONSOLE_READ_TOKEN: anyone who reaches the port may read."""
        return not self.read_tokens

    def session_key(self) -> str:
        """The session cookie's signing key: derived from the tokens (rotating one ends
        every session), random per process when there are none."""
        tokens = sorted(t.secret for t in (*self.write_tokens, *self.read_tokens))
        if not tokens:
            return secrets.token_urlsafe(32)
        material = "\n".join(tokens).encode()
        return hmac.new(b"cronlock console session", material, hashlib.sha256).hexdigest()

    def identify(self, presented: str) -> Caller:
        """The caller a token makes: a writer, a reader, or nobody."""
        token = match_token(presented, self.write_tokens)
        if token is not None:
            return Caller(token.label, can_write=True, can_read=True)
        token = match_token(presented, self.read_tokens)
        if token is not None:
            return Caller(token.label, can_read=True)
        return Caller()

    def caller(self, request: Request) -> Caller:
        """Who this request is: its bearer token, else its session."""
        header = request.headers.get("authorization", "")
        scheme, _, presented = header.partition(" ")
        if header:
            if scheme.lower() != "bearer" or not presented.strip():
                raise ConsoleError(401, "the Authorization header must be `Bearer <token>`")
            caller = self.identify(presented.strip())
            if caller.label is None:
                raise ConsoleError(401, "that token is not accepted; check CONSOLE_TOKEN")
            return caller
        session = request.session if "session" in request.scope else {}
        label = session.get("label")
        if isinstance(label, str):
            return Caller(label, can_write=bool(session.get("write")), can_read=True)
        return Caller(can_read=self.reads_open)

    def require_read(self, request: Request) -> Caller:
        """The caller, if it may read; else 401."""
        caller = self.caller(request)
        if not caller.can_read:
            raise ConsoleError(
                401, "reading needs a token: send `Authorization: Bearer <CONSOLE_READ_TOKEN>`"
            )
        return caller

    def require_write(self, request: Request) -> Caller:
        """The caller, if it may act; else 403 (read-only console) or 401."""
        if self.read_only:
            raise ConsoleError(
                403, "the console is read-only: set CONSOLE_TOKEN on the server to allow actions"
            )
        caller = self.caller(request)
        if not caller.can_write:
            raise ConsoleError(
                401, "this action needs a token: send `Authorization: Bearer <CONSOLE_TOKEN>`"
            )
        return caller

    def sign_in(self, request: Request, presented: str) -> Caller:
        """Start a page session for a token; 401 when it is not accepted."""
        caller = self.identify(presented.strip())
        if caller.label is None:
            raise ConsoleError(401, "that token is not accepted")
        request.session.clear()
        request.session.update(
            {"label": caller.label, "write": caller.can_write, "csrf": secrets.token_urlsafe(24)}
        )
        return caller

    @staticmethod
    def csrf_token(request: Request) -> str:
        """The session's CSRF token (made on first use), for the forms of a page."""
        token = request.session.get("csrf")
        if not isinstance(token, str):
            token = secrets.token_urlsafe(24)
            request.session["csrf"] = token
        return token

    @staticmethod
    def check_csrf(request: Request, posted: object) -> None:
        """A form post must carry its session's CSRF token; 403 otherwise."""
        expected = request.session.get("csrf")
        if not (
            isinstance(expected, str)
            and isinstance(posted, str)
            and hmac.compare_digest(expected.encode(), posted.encode())
        ):
            raise ConsoleError(
                403, "the form is stale or came from another site; reload the page and try again"
            )
