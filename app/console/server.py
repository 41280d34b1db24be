"""The console's HTTP server: one ASGI app (API, pages, probes, metrics) under uvicorn.

The worker serves it on METRICS_PORT from a background thread, next to its loop;
`cronlock serve` serves it alone. The socket is bound before the thread starts,
so a taken port is a clear configuration error at start-up, not a log line later.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.middleware.sessions import SessionMiddleware

from app.config import Settings
from app.console.actions import ConsoleActions
from app.console.api import router as api_router
from app.console.auth import SESSION_COOKIE, Access
from app.console.guards import GuardMiddleware, install_error_handlers
from app.console.pages import mount_pages
from app.console.probes import router as probes_router
from app.console.service import ConsoleReads
from app.core.job import ConfiguredJob
from app.errors import ConfigError
from app.ops.health import Probes
from app.registry import JobRegistry
from app.runtime.manual import BackgroundRuns
from app.store.facade import Store

logger = logging.getLogger(__name__)

SESSION_MAX_AGE_S = 12 * 3600


class Console:
    """Everything one process needs to serve the console."""

    def __init__(
        self,
        store: Store,
        registry: JobRegistry,
        jobs: list[ConfiguredJob],
        settings: Settings,
        probes: Probes,
    ) -> None:
        self.settings = settings
        self.background = BackgroundRuns(store, settings)
        self.reads = ConsoleReads(store, registry, jobs, settings)
        self.actions = ConsoleActions(store, self.reads, settings, self.background)
        self.access = Access(settings)
        self.probes = probes
        self.app = self._build()

    def _build(self) -> FastAPI:
        app = FastAPI(
            title="cronlock console",
            summary="Every job and every scheduled instant of a cronlock deployment.",
            version="1",
            openapi_url="/api/openapi.json",
            docs_url=None,  # the interactive docs load scripts from a CDN; the JSON is enough
            redoc_url=None,
        )
        app.state.reads = self.reads
        app.state.actions = self.actions
        app.state.access = self.access
        app.state.probes = self.probes
        app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
        app.include_router(probes_router)
        app.include_router(api_router)
        mount_pages(app)
        install_error_handlers(app)
        app.add_middleware(
            SessionMiddleware,
            secret_key=self.access.session_key(),
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_MAX_AGE_S,
            same_site="strict",
        )
        app.add_middleware(GuardMiddleware)
        return app

    def close(self) -> None:
        """Stop taking runs; runs started here get the shutdown grace, then are recorded."""
        self.background.close(grace_s=self.settings.shutdown_grace_s)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document as the API behaves: a refused request is a 400 with the
    console's error body, not FastAPI's default 422."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title, version=app.version, summary=app.summary, routes=app.routes
        )
        for path in document.get("paths", {}).values():
            for operation in path.values():
                responses = operation.get("responses", {})
                if responses.pop("422", None) is not None:
                    responses.setdefault("400", _ERROR_RESPONSE)
        for name in ("HTTPValidationError", "ValidationError"):
            document.get("components", {}).get("schemas", {}).pop(name, None)
        app.openapi_schema = document
    return app.openapi_schema


_ERROR_RESPONSE = {
    "description": "the request was refused; `fields` says which part and why",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
}


class ConsoleServer:
    """uvicorn in a background thread, on a socket bound at construction."""

    def __init__(self, console: Console, *, host: str, port: int) -> None:
        self.console = console
        try:
            self._socket = socket.create_server((host, port), reuse_port=False)
        except OSError as exc:  # port taken, or a host that does not resolve
            raise ConfigError(
                f"cannot serve METRICS_PORT={port} on METRICS_HOST={host!r}: "
                f"{exc.strerror or exc}; pick a free port, or a host address of this machine"
            ) from None
        config = uvicorn.Config(
            console.app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="console", daemon=True)

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return int(self._socket.getsockname()[1])

    def start(self) -> None:
        """Serve in the background."""
        self._thread.start()
        logger.info(
            "serving the console, /api, /metrics, /healthz and /readyz on port %d",
            self.port,
            extra={"event": "console_started", "port": self.port},
        )

    def stop(self) -> None:
        """Stop serving, then settle the runs this process started."""
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
        self.console.close()

    def _serve(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._socket]))


# uvicorn's own lines would say again what cronlock logs: the start-up (console_started),
# and each unexpected error, which the console logs once with its path (console_error).
logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
