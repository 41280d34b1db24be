"""Liveness, readiness and /metrics on METRICS_PORT, for probes and Prometheus.

/healthz: the worker's loop went round recently, or, during a run, its heartbeat
thread said so (every 5 s, whether renewals land or not: a long job blocks the
loop but is alive, and a database outage is not a wedged worker).
/readyz: the database answers and its schema is at head.
/metrics: the Prometheus exposition of `app.ops.metrics`.
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.errors import ConfigError, CronlockError
from app.ops.metrics import REGISTRY
from app.store.database import Database
from app.store.migrations import ensure_at_head

logger = logging.getLogger(__name__)


class Liveness:
    """When the worker last proved it is alive; stamped by the loop and the lease thread."""

    def __init__(self) -> None:
        self._last = time.monotonic()

    def beat(self) -> None:
        """The loop went round, or a running job's lease was renewed."""
        self._last = time.monotonic()

    def age_s(self) -> float:
        """Seconds since the last beat."""
        return time.monotonic() - self._last


class HealthServer:
    """A small threaded HTTP server; stopped with the worker."""

    def __init__(
        self,
        database: Database,
        liveness: Liveness,
        *,
        host: str,
        port: int,
        max_silence_s: float,
    ) -> None:
        self.database = database
        self.liveness = liveness
        self.max_silence_s = max_silence_s
        try:
            self._server = ThreadingHTTPServer((host, port), self._handler())
        except OSError as exc:  # port taken, or a host that does not resolve
            raise ConfigError(
                f"cannot serve METRICS_PORT={port} on METRICS_HOST={host!r}: "
                f"{exc.strerror or exc}; pick a free port, or a host address of this machine"
            ) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve in the background."""
        self._thread.start()
        logger.info(
            "serving /metrics, /healthz and /readyz on port %d",
            self.port,
            extra={"event": "health_server_started", "port": self.port},
        )

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def readiness(self) -> tuple[int, str]:
        """200 when the database answers and the schema is at head."""
        try:
            self.database.ping()
            ensure_at_head(self.database)
        except CronlockError as exc:
            return 503, exc.message
        return 200, "ready"

    def liveness_status(self) -> tuple[int, str]:
        """200 when the loop or a running job's lease proved alive recently."""
        age_s = self.liveness.age_s()
        if age_s > self.max_silence_s:
            return 503, f"the worker's loop has not gone round for {age_s:.0f}s"
        return 200, "alive"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    self._send_text(*server.liveness_status())
                elif self.path == "/readyz":
                    self._send_text(*server.readiness())
                else:
                    self._send_text(404, "not found: try /metrics, /healthz or /readyz")

            def _send_text(self, status: int, text: str) -> None:
                self._send(status, (text + "\n").encode(), "text/plain; charset=utf-8")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                """Probes every few seconds would flood the log; stay quiet."""

        return Handler
