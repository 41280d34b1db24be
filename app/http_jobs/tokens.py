"""OAuth2 client-credentials tokens for HTTP jobs, cached per process until shortly
before they expire.

One cache (`TOKENS`) serves every HTTP job of the process: jobs that call the same
audience with the same scopes share a token, so an hourly job asks the token
endpoint about once per token lifetime, not once per run. A 401 from a target drops
the token it refused (`invalidate`), and the next `get` asks for a fresh one.

The client authenticates with HTTP Basic (RFC 6749 2.3.1, `client_secret_basic`)
and sends `audience` and `scope` as form fields. Written on httpx alone: the grant
is one form POST, and the cache is most of the work.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from app.errors import HttpCallFailed
from app.http_jobs.policy import Verdict, quoted, retry_after_s, target_host, verdict

logger = logging.getLogger(__name__)

DEFAULT_LIFETIME_S = 300.0  # a token answered without expires_in
MAX_LIFETIME_S = 86_400.0
REFRESH_MARGIN = 0.1  # refresh when a tenth of the lifetime is left (at most a minute)
MAX_REFRESH_MARGIN_S = 60.0


@dataclass(frozen=True)
class TokenKey:
    """Who asks for what: tokens are shared only between identical requests."""

    token_url: str
    client_id: str
    audience: str | None
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class Credentials:
    """The client's id and secret, kept apart from the key so no map holds the secret."""

    client_id: str
    client_secret: str

    def basic_auth(self) -> tuple[str, str]:
        """Id and secret form-encoded before Basic encoding, as RFC 6749 2.3.1 asks."""
        return quote(self.client_id, safe=""), quote(self.client_secret, safe="")


class TokenNotIssued(HttpCallFailed):
    """The token endpoint gave no token. `retryable`: asking again later may work."""

    def __init__(
        self, message: str, *, retryable: bool, status: int | None, retry_after: float | None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: float  # by the cache's clock


class TokenCache:
    """Access tokens by `TokenKey`, thread-safe; fetched with the caller's async client.

    Two threads missing the same key at once may both fetch: the later token wins,
    and both work. `clock` is monotonic seconds; tests move it by hand.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._tokens: dict[TokenKey, _Token] = {}
        self._lock = threading.Lock()
        self.fetched = 0  # how many tokens this cache asked for

    async def get(self, client: httpx.AsyncClient, key: TokenKey, credentials: Credentials) -> str:
        """A token for `key`: the cached one while fresh, else a new one."""
        with self._lock:
            cached = self._tokens.get(key)
        if cached is not None and self.clock() < cached.refresh_at:
            return cached.value
        value, lifetime_s = await _request_token(client, key, credentials)
        margin = min(lifetime_s * REFRESH_MARGIN, MAX_REFRESH_MARGIN_S)
        with self._lock:
            self._tokens[key] = _Token(value, self.clock() + lifetime_s - margin)
            self.fetched += 1
        logger.info(
            "fetched an M2M token from %s for audience %s (valid %.0f s)",
            target_host(key.token_url),
            key.audience or "(none)",
            lifetime_s,
            extra={
                "event": "m2m_token_fetched",
                "token_host": target_host(key.token_url),
                "audience": key.audience,
                "expires_in_s": lifetime_s,
            },
        )
        return value

    def invalidate(self, key: TokenKey, value: str) -> None:
        """Drop the token a target refused, unless another has replaced it meanwhile."""
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and cached.value == value:
                del self._tokens[key]

    def clear(self) -> None:
        """Forget every token."""
        with self._lock:
            self._tokens.clear()


TOKENS = TokenCache()
"""The process's cache, shared by every HTTP job."""


async def _request_token(
    client: httpx.AsyncClient, key: TokenKey, credentials: Credentials
) -> tuple[str, float]:
    """POST the client-credentials grant; the token and its lifetime in seconds."""
    form = {"grant_type": "client_credentials"}
    if key.audience:
        form["audience"] = key.audience
    if key.scopes:
        form["scope"] = " ".join(key.scopes)
    where = f"token endpoint {target_host(key.token_url)}"
    try:
        response = await client.post(
            key.token_url,
            data=form,
            auth=httpx.BasicAuth(*credentials.basic_auth()),
            headers={"Accept": "application/json"},
        )
    except httpx.TimeoutException:
        raise TokenNotIssued(
            f"{where} did not answer in time", retryable=True, status=None, retry_after=None
        ) from None
    except httpx.TransportError as exc:
        raise TokenNotIssued(
            f"{where}: {transport_failure(exc)}", retryable=True, status=None, retry_after=None
        ) from None
    status = response.status_code
    if verdict(status) is Verdict.SUCCESS:
        return _read_token(where, response)
    said = quoted(_error_of(response))
    if status == 401 or (status in (400, 403) and "invalid_client" in said):
        message = f"{where} refused the client credentials ({status}): {said}"
    else:
        message = f"{where} answered {status}: {said}"
    raise TokenNotIssued(
        message,
        retryable=verdict(status) is Verdict.RETRY,
        status=status,
        retry_after=retry_after_s(response.headers.get("Retry-After"), datetime.now(UTC)),
    )


def _read_token(where: str, response: httpx.Response) -> tuple[str, float]:
    try:
        answer: Any = response.json()
    except ValueError:
        answer = None
    token = answer.get("access_token") if isinstance(answer, dict) else None
    if not isinstance(token, str) or not token:
        raise TokenNotIssued(
            f"{where} answered {response.status_code} without an access_token",
            retryable=False,
            status=response.status_code,
            retry_after=None,
        )
    token_type = answer.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise TokenNotIssued(
            f"{where} issued a {token_type!r} token; HTTP jobs send bearer tokens only",
            retryable=False,
            status=response.status_code,
            retry_after=None,
        )
    return token, _lifetime_s(answer.get("expires_in"))


def _lifetime_s(expires_in: object) -> float:
    """`expires_in` as seconds; unreadable or absent, a default; never over a day."""
    try:
        seconds = float(expires_in) if isinstance(expires_in, int | float | str) else None
    except ValueError:
        seconds = None
    if seconds is None or not seconds > 0:
        return DEFAULT_LIFETIME_S
    return min(seconds, MAX_LIFETIME_S)


def _error_of(response: httpx.Response) -> str:
    """RFC 6749's `error` and `error_description`, or the start of the body."""
    try:
        answer = response.json()
    except ValueError:
        return response.text
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        description = answer.get("error_description")
        return str(answer["error"]) + (f": {description}" if isinstance(description, str) else "")
    return response.text


# What a failed connection says, by the error found under httpx's ConnectError.
_CONNECT_FAILURES: tuple[tuple[type[BaseException], str], ...] = (
    (ConnectionRefusedError, "connection refused"),
    (socket.gaierror, "the host name does not resolve"),
    (ssl.SSLError, "the TLS handshake failed (check the certificate)"),
)


def transport_failure(exc: httpx.TransportError) -> str:
    """A transport error as a message says it, without the URL httpx may quote."""
    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the connection was closed without an answer"
    if not isinstance(exc, httpx.ConnectError):
        return f"the connection failed ({type(exc).__name__})"
    causes = _causes(exc)
    for kind, said in _CONNECT_FAILURES:
        if any(isinstance(cause, kind) for cause in causes):
            return said
    return "could not connect"


def _causes(exc: BaseException) -> list[BaseException]:
    """The chain of errors under `exc` (anyio wraps the socket's in an OSError of its own)."""
    found: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in found and len(found) < 20:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found
