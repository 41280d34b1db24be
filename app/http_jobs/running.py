"""An HTTP job's body: plan the call from the run, make it, stop it when asked.

Bodies run in the worker's main thread, where cronlock's alarm interrupts them
(the job's timeout, the end of the shutdown grace): the interrupt surfaces from
the event loop, `asyncio.run` cancels the request on its way out, and the run ends
FAILURE with the usual reason. A lost lease, or a console run's timeout, only turns
`ctx.should_stop()` true: a watcher polls it and cancels the request, which closes
its connection at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import ssl
from typing import Any

import httpx

from app import __version__
from app.core.redaction import scrub
from app.core.stops import RunInterrupted
from app.errors import ConfigError, HttpCallFailed
from app.http_jobs.call import CallPlan, perform
from app.http_jobs.policy import attempt_backoff, join_url, query_secrets
from app.http_jobs.target import HttpTarget
from app.http_jobs.tokens import Credentials, TokenKey
from app.runtime.context import RunContext

logger = logging.getLogger(__name__)

STOP_POLL_S = 0.05
USER_AGENT = f"cronlock/{__version__}"


def call_target(ctx: RunContext, target: HttpTarget) -> dict[str, Any]:
    """Make the job's call for this run; its result, or HttpCallFailed saying why."""
    plan = plan_call(ctx, target)
    try:
        return asyncio.run(_until_stopped(ctx, plan))
    except RunInterrupted as exc:
        logger.warning(
            "%s interrupted: %s; the request was dropped",
            plan.shown,
            exc.reason,
            extra={
                "event": "http_call_failed",
                "target_host": plan.host,
                "target_status": "interrupted",
            },
        )
        raise


def plan_call(ctx: RunContext, target: HttpTarget) -> CallPlan:
    """The request for this run: URL from the environment, token key, headers, body."""
    settings = ctx.settings
    target.check_settings(settings, ctx.job_name)
    m2m = settings.m2m
    if m2m.token_url is None or m2m.client_id is None or m2m.client_secret is None:
        raise ConfigError("the M2M client is not configured")  # check_settings said which
    url = join_url(target.base_url(settings), target.path)
    headers = {
        **target.headers,
        "User-Agent": f"{USER_AGENT} (job {ctx.job_name})",
        "Accept": "application/json, text/plain;q=0.9, */*;q=0.5",
        # The same for every attempt of the instant and for another worker taking it
        # over, so the target can tell a repeat from new work.
        "Idempotency-Key": f"{ctx.job_name}:{ctx.scheduled_for.isoformat()}",
        "X-Cronlock-Run-Id": str(ctx.run_id),
        "X-Cronlock-Scheduled-For": ctx.scheduled_for.isoformat(),
    }
    body = target.body
    if ctx.dry_run:
        headers["X-Cronlock-Dry-Run"] = "true"
        if isinstance(body, dict):
            body = {**body, "dry_run": True}
    content = None
    if body is not None:
        content = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    return CallPlan(
        job_name=ctx.job_name,
        method=target.method,
        url=url,
        headers=headers,
        content=content,
        key=TokenKey(
            token_url=m2m.token_url,
            client_id=m2m.client_id,
            audience=target.audience if target.audience is not None else m2m.audience,
            scopes=target.scopes if target.scopes is not None else m2m.scopes,
        ),
        credentials=Credentials(m2m.client_id, m2m.client_secret),
        timeout_s=target.timeout_s,
        max_attempts=target.max_attempts,
        backoff=attempt_backoff(target.attempt_backoff_s),
        secrets=(*settings.secrets, *query_secrets(url)),
    )


async def _until_stopped(ctx: RunContext, plan: CallPlan) -> dict[str, Any]:
    """Run the call, cancelling it as soon as the run is asked to stop."""
    async with httpx.AsyncClient(verify=_tls(), follow_redirects=False) as client:
        call = asyncio.create_task(perform(client, plan))
        while True:
            done, _ = await asyncio.wait({call}, timeout=STOP_POLL_S)
            if done:
                return call.result()
            if ctx.should_stop():
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await call
                message = (
                    f"{plan.shown} stopped: the run was asked to stop (lease lost, timeout "
                    "or shutdown) and its request was dropped"
                )
                logger.warning(
                    "%s",
                    message,
                    extra={
                        "event": "http_call_failed",
                        "target_host": plan.host,
                        "target_status": "stopped",
                    },
                )
                raise HttpCallFailed(scrub(message, plan.secrets))


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context per process: loading the CA bundle costs more than a loopback call."""
    return httpx.create_ssl_context()
