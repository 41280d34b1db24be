"""What an HTTP job makes of an answer: retry or not, how long to wait, what to keep.

Pure: no I/O and no clock reads (the caller passes `now`), so every rule here is a
unit test away. The I/O lives in `call.py` and `tokens.py`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from app.core.backoff import Backoff
from app.core.display import cut
from app.core.redaction import MIN_SECRET_LENGTH, scrub, scrub_json

MAX_EXCERPT_CHARS = 2048  # what a run's result keeps of the answer
MAX_ERROR_EXCERPT_CHARS = 500  # what an error message quotes of it
MAX_BACKOFF_S = 30.0


class Verdict(Enum):
    """What to do after an answer."""

    SUCCESS = "success"
    REFRESH = "refresh"  # 401: the token may have been revoked; take a fresh one once
    RETRY = "retry"  # the target may answer better in a moment
    FAIL = "fail"  # asking again would get the same answer


def verdict(status: int) -> Verdict:
    """2xx succeeds; 401 refreshes the token; 408, 429 and 5xx are retried; others fail."""
    if 200 <= status < 300:
        return Verdict.SUCCESS
    if status == 401:
        return Verdict.REFRESH
    if status in (408, 429) or status >= 500:
        return Verdict.RETRY
    return Verdict.FAIL


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date.

    None when absent or unreadable (the backoff then decides); never negative.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(min(int(text), 10**9))
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000": RFC 5322 for "UTC, source unknown"
        moment = moment.replace(tzinfo=UTC)
    return max((moment - now).total_seconds(), 0.0)


def attempt_backoff(first_s: float) -> Backoff:
    """Waits between attempts: `first_s`, doubling, jittered by half, at most 30 s."""
    return Backoff(first_s, cap_s=max(MAX_BACKOFF_S, first_s), jitter=0.5)


def next_wait_s(
    backoff: Backoff, attempts: int, retry_after: float | None, remaining_s: float
) -> float | None:
    """The wait before the next attempt, or None when it would end past the deadline.

    The target's Retry-After wins over the backoff; waiting only to find the budget
    spent would delay the failure without a chance of success.
    """
    wait = retry_after if retry_after is not None else backoff.delay_s(attempts)
    if not math.isfinite(wait) or wait >= remaining_s:
        return None
    return wait


def excerpt(content: bytes, content_type: str | None, secrets: Sequence[str]) -> Any:
    """The answer as a run's result keeps it: its JSON when small enough, else its text cut.

    Secrets are replaced; NUL characters, which PostgreSQL cannot store, are dropped.
    """
    text = content.decode("utf-8", errors="replace").replace("\x00", "")
    if "json" in (content_type or "") or text.lstrip()[:1] in ("{", "["):
        try:
            parsed = json.loads(text, parse_constant=_refuse_constant)
        except ValueError:
            parsed = None
        else:
            if len(json.dumps(parsed)) <= MAX_EXCERPT_CHARS:
                return scrub_json(_without_nul(parsed), secrets)
    return cut(scrub(text, secrets), MAX_EXCERPT_CHARS) if text else None


def _without_nul(value: Any) -> Any:
    """JSON with the NUL characters its escapes (\\u0000) made dropped, keys included."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON a run's result can store")


def quoted(kept: Any) -> str:
    """An excerpt as an error message quotes it: one line, short."""
    if kept is None:
        return "(empty answer)"
    text = kept if isinstance(kept, str) else json.dumps(kept)
    return cut(" ".join(text.split()), MAX_ERROR_EXCERPT_CHARS)


def join_url(base: str, path: str) -> str:
    """The URL to call: the base URL's path, then `path`, with both queries kept."""
    base_parts = urlsplit(base)
    path_parts = urlsplit(path)
    query = "&".join(q for q in (base_parts.query, path_parts.query) if q)
    full_path = base_parts.path.rstrip("/") + path_parts.path
    return urlunsplit((base_parts.scheme, base_parts.netloc, full_path, query, ""))


def target_host(url: str) -> str:
    """The host (and a port when one is given) as logs and metrics name the target."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"{host}:{parts.port}" if parts.port is not None else host


def shown_target(method: str, url: str) -> str:
    """`POST host/path`: the call as messages show it, without its query (keys travel there)."""
    return f"{method} {target_host(url)}{urlsplit(url).path or '/'}"


def query_secrets(url: str) -> list[str]:
    """The values of the URL's query parameters, kept out of every message and result."""
    values = [value for _, value in parse_qsl(urlsplit(url).query)]
    return [value for value in values if len(value) >= MIN_SECRET_LENGTH]
