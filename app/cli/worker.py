"""`cronlock worker`: the long-running loop, its signals, its HTTP server."""

from __future__ import annotations

import argparse
import itertools
import logging
import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

from app.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_JOB_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Deployment,
    ready_store,
)
from app.errors import ConfigError
from app.ops.health import Probes
from app.ops.systemd import Notifier
from app.runtime.worker import LIVENESS_INTERVAL_S, Worker
from app.store.facade import Store

if TYPE_CHECKING:
    from app.console.server import ConsoleServer

logger = logging.getLogger(__name__)


def cmd_worker(args: argparse.Namespace, deployment: Deployment) -> int:
    """Run the jobs on their schedules until SIGINT/SIGTERM (or once, with --once)."""
    settings = deployment.settings
    store = ready_store(settings, announce=True)
    notifier = Notifier(settings.notify_socket, watchdog_usec=settings.watchdog_usec)
    worker = Worker(store, deployment.jobs, settings, notifier=notifier)
    _stop_on_signals(worker)
    server = None
    if settings.metrics_port is not None and not args.once:
        # A long run keeps liveness up through its lease renewals.
        max_silence_s = max(6 * LIVENESS_INTERVAL_S, 3 * settings.heartbeat_interval_s)
        server = _console_server(
            store, deployment, Probes(store.database, worker.liveness, max_silence_s=max_silence_s)
        )
        server.start()
    logger.info(
        "worker %s started with %d jobs (%d enabled) on %s",
        worker.worker_id,
        len(worker.jobs),
        len(worker.enabled),
        store.database.display_url,
        extra={"event": "worker_started", "worker_id": worker.worker_id},
    )
    try:
        report = worker.run_once() if args.once else worker.run_forever()
    finally:
        # The shutdown grace's alarm has nothing left to interrupt; left armed, it could
        # fire while the console settles its runs, or during the interpreter's exit.
        worker.alarm.disarm()
        if server is not None:
            server.stop()
    if worker.forced_stop:
        return EXIT_INTERRUPTED
    if worker.schema_missing:
        return EXIT_USAGE
    return EXIT_JOB_FAILED if report.failed and args.once else EXIT_OK


def _console_server(store: Store, deployment: Deployment, probes: Probes) -> ConsoleServer:
    """The console on METRICS_HOST:METRICS_PORT, bound now (a taken port is exit 2).

    Imported here: the web stack is a fifth of an idle worker's memory, and a
    worker without METRICS_PORT does not need it.
    """
    from app.console.server import Console, ConsoleServer  # noqa: PLC0415

    settings = deployment.settings
    console = Console(store, deployment.registry, deployment.jobs, settings, probes)
    assert settings.metrics_port is not None  # noqa: S101 - checked by the callers
    return ConsoleServer(console, host=settings.metrics_host, port=settings.metrics_port)


def cmd_serve(_args: argparse.Namespace, deployment: Deployment) -> int:
    """Serve the console without running jobs, until SIGINT/SIGTERM.

    Runs started from the console run in this process; on a stop, they get the
    shutdown grace to finish, then are recorded FAILURE.
    """
    settings = deployment.settings
    if settings.metrics_port is None:
        raise ConfigError("`cronlock serve` needs METRICS_PORT, the port to serve on, e.g. 9464")
    store = ready_store(settings, announce=True)
    store.ensure_jobs([configured.name for configured in deployment.jobs])
    server = _console_server(store, deployment, Probes(store.database, None, max_silence_s=0))
    stop = threading.Event()

    def handle(signum: int, _frame: FrameType | None) -> None:
        logger.info(
            "%s received: stopping the console",
            signal.Signals(signum).name,
            extra={"event": "console_stopping"},
        )
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    server.start()
    try:
        stop.wait()
    finally:
        server.stop()
    return EXIT_OK


def _stop_on_signals(worker: Worker) -> None:
    """First SIGINT/SIGTERM: graceful stop with a grace period; second: stop now."""
    # next() on a count is one C call, so a second signal landing inside this
    # handler still sees itself as the second.
    received = itertools.count(1)

    def handle(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if next(received) > 1:
            logger.warning("second %s: stopping now", name, extra={"event": "worker_interrupted"})
            worker.force_stop()
        worker.request_stop()
        logger.info(
            "%s received: no new run will start; a run in progress has %gs to finish",
            name,
            worker.settings.shutdown_grace_s,
            extra={"event": "worker_stopping"},
        )

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
