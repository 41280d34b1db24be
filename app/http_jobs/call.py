"""One HTTP job's call: attempts with a token, retried within the job's timeout.

Connect errors, timeouts, 408, 429 (after its Retry-After) and 5xx are retried with
jittered exponential backoff; a 401 takes a fresh token and tries once more; any
other 4xx fails at once. Every wait is bounded by the deadline: an attempt gets the
budget that is left, and a wait that would end past it is not taken.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from app.core.backoff import Backoff
from app.core.redaction import scrub
from app.errors import HttpCallFailed
from app.http_jobs.policy import (
    Verdict,
    excerpt,
    next_wait_s,
    quoted,
    retry_after_s,
    shown_target,
    target_host,
    verdict,
)
from app.http_jobs.tokens import (
    TOKENS,
    Credentials,
    TokenCache,
    TokenKey,
    TokenNotIssued,
    transport_failure,
)
from app.ops import metrics

logger = logging.getLogger(__name__)

MAX_READ_BYTES = 256 * 1024  # an answer is read up to this; the result keeps 2 KiB of it
DEADLINE_SLACK_S = 0.01  # an attempt that failed this close to the deadline timed out
NO_ANSWER = "no answer in time"


@dataclass(frozen=True, kw_only=True)
class CallPlan:
    """Everything one call needs, resolved from the job, the run and the settings."""

    job_name: str
    method: str
    url: str
    headers: dict[str, str]  # all but Authorization, which each attempt sets
    content: bytes | None
    key: TokenKey
    credentials: Credentials
    timeout_s: float
    max_attempts: int
    backoff: Backoff
    secrets: tuple[str, ...]  # kept out of every message and of the result

    @property
    def shown(self) -> str:
        """`POST host/path`, as messages name the call."""
        return shown_target(self.method, self.url)

    @property
    def host(self) -> str:
        """The target's host, as logs and metrics name it."""
        return target_host(self.url)


@dataclass(frozen=True)
class _Answer:
    status: int
    kept: Any  # the excerpt of the body
    retry_after: float | None


@dataclass
class _Progress:
    """Where a call stands: attempts made, the last thing that went wrong."""

    started: float
    deadline: float
    attempts: int = 0
    last: str = ""
    last_status: str = ""

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


async def perform(
    client: httpx.AsyncClient, plan: CallPlan, tokens: TokenCache = TOKENS
) -> dict[str, Any]:
    """Make the call; return the run's result, or raise HttpCallFailed saying why."""
    now = time.monotonic()
    progress = _Progress(started=now, deadline=now + plan.timeout_s)
    refreshed = False
    while True:
        remaining = progress.deadline - time.monotonic()
        progress.attempts += 1
        sent = time.monotonic()
        retry_after: float | None = None
        try:
            async with asyncio.timeout(remaining):
                token, answer = await _attempt(client, plan, tokens, remaining)
        except TimeoutError:  # the deadline passed during the attempt
            progress.last, progress.last_status = NO_ANSWER, "timeout"
            _observe(plan, "timeout", time.monotonic() - sent)
        except TokenNotIssued as exc:
            progress.last, progress.last_status = f"got no token: {exc.message}", "token_error"
            if not exc.retryable:
                raise _failed(plan, progress, progress.last) from None
            retry_after = exc.retry_after
        except httpx.TransportError as exc:
            progress.last = transport_failure(exc)
            progress.last_status = (
                "timeout" if isinstance(exc, httpx.TimeoutException) else "connect_error"
            )
            _observe(plan, progress.last_status, time.monotonic() - sent)
        else:
            said = verdict(answer.status)
            if said is Verdict.SUCCESS:
                return _succeeded(plan, progress, answer)
            progress.last = f"answered {answer.status}: {quoted(answer.kept)}"
            progress.last_status = str(answer.status)
            if said is Verdict.REFRESH and not refreshed:
                refreshed = True
                tokens.invalidate(plan.key, token)
                continue
            if said is not Verdict.RETRY:
                raise _failed(plan, progress, _refused(answer, refreshed))
            retry_after = answer.retry_after
        await _wait_before_retry(plan, progress, retry_after)


async def _attempt(
    client: httpx.AsyncClient, plan: CallPlan, tokens: TokenCache, remaining: float
) -> tuple[str, _Answer]:
    """One request with a token; its answer, read up to MAX_READ_BYTES."""
    token = await tokens.get(client, plan.key, plan.credentials)
    headers = {**plan.headers, "Authorization": f"Bearer {token}"}
    sent = time.monotonic()
    request = client.build_request(
        plan.method, plan.url, headers=headers, content=plan.content, timeout=remaining
    )
    response = await client.send(request, stream=True)
    try:
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) >= MAX_READ_BYTES:
                break
    finally:
        await response.aclose()
    _observe(plan, str(response.status_code), time.monotonic() - sent)
    secrets = (token, *plan.secrets)
    return token, _Answer(
        response.status_code,
        excerpt(bytes(body[:MAX_READ_BYTES]), response.headers.get("Content-Type"), secrets),
        retry_after_s(response.headers.get("Retry-After"), datetime.now(UTC)),
    )


async def _wait_before_retry(
    plan: CallPlan, progress: _Progress, retry_after: float | None
) -> None:
    """Sleep before the next attempt, or fail when none is left or it would end too late."""
    remaining = progress.deadline - time.monotonic()
    if remaining <= DEADLINE_SLACK_S:
        last = "" if progress.last == NO_ANSWER else f" (last: {progress.last})"
        raise _failed(plan, progress, f"timed out after {plan.timeout_s:g} s{last}")
    if progress.attempts >= plan.max_attempts:
        raise _failed(plan, progress, progress.last)
    wait = next_wait_s(plan.backoff, progress.attempts, retry_after, remaining)
    if wait is None:
        asked = "" if retry_after is None else f" (Retry-After: {retry_after:g} s)"
        raise _failed(plan, progress, f"{progress.last}; no time left to try again{asked}")
    logger.warning(
        "%s, attempt %d: %s; trying again in %.1f s",
        plan.shown,
        progress.attempts,
        scrub(progress.last, plan.secrets),
        wait,
        extra={
            "event": "http_call_retrying",
            "target_host": plan.host,
            "target_status": progress.last_status,
            "attempts": progress.attempts,
            "wait_s": round(wait, 3),
        },
    )
    await asyncio.sleep(wait)


def _succeeded(plan: CallPlan, progress: _Progress, answer: _Answer) -> dict[str, Any]:
    duration_ms = round(progress.elapsed_s() * 1000, 1)
    logger.info(
        "%s answered %d after %d attempt(s) in %.0f ms",
        plan.shown,
        answer.status,
        progress.attempts,
        duration_ms,
        extra={
            "event": "http_call_succeeded",
            "target_host": plan.host,
            "target_status": str(answer.status),
            "attempts": progress.attempts,
            "call_ms": duration_ms,
        },
    )
    return {
        "status": answer.status,
        "attempts": progress.attempts,
        "response": answer.kept,
        "duration_ms": duration_ms,
        "target_host": plan.host,
    }


def _refused(answer: _Answer, refreshed: bool) -> str:
    if answer.status == 401 and refreshed:
        return (
            f"answered 401 with a fresh token: {quoted(answer.kept)}; check that the job's "
            "audience and scopes are those the target expects"
        )
    return f"answered {answer.status}: {quoted(answer.kept)}"


def _failed(plan: CallPlan, progress: _Progress, what: str) -> HttpCallFailed:
    """The run's error: the call, what happened, after how many attempts and how long."""
    attempts = f"{progress.attempts} attempt" + ("s" if progress.attempts != 1 else "")
    message = scrub(
        f"{plan.shown} {what}; {attempts} in {progress.elapsed_s():.1f} s", plan.secrets
    )
    logger.warning(
        "%s",
        message,
        extra={
            "event": "http_call_failed",
            "target_host": plan.host,
            "target_status": progress.last_status or "none",
            "attempts": progress.attempts,
        },
    )
    return HttpCallFailed(message)


def _observe(plan: CallPlan, status: str, seconds: float) -> None:
    metrics.http_call_answered(plan.job_name, plan.host, status, seconds)
