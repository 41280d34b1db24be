"""/healthz, /readyz and /metrics: the probes and the scrape, open to anyone who reaches
the port (as before the console existed), whatever the console's tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from app.ops.health import Probes

router = APIRouter(tags=["probes"])


def _probes(request: Request) -> Probes:
    probes: Probes = request.app.state.probes
    return probes


@router.get("/healthz", response_class=PlainTextResponse)
def healthz(request: Request) -> PlainTextResponse:
    """200 while the worker's loop (or a running job's lease) proves it alive."""
    status, text = _probes(request).liveness_status()
    return PlainTextResponse(text + "\n", status_code=status)


@router.get("/readyz", response_class=PlainTextResponse)
def readyz(request: Request) -> PlainTextResponse:
    """200 when the database answers and its schema is at head."""
    status, text = _probes(request).readiness()
    return PlainTextResponse(text + "\n", status_code=status)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(request: Request) -> Response:
    """The Prometheus exposition of cronlock's metrics."""
    body, content_type = _probes(request).metrics()
    return Response(body, media_type=content_type)
