"""The systemd notify protocol (READY, WATCHDOG, STOPPING) over NOTIFY_SOCKET.

A datagram per message to the socket systemd names; no dependency needed. With
Type=notify systemd waits for READY=1 before the unit counts as started, and with
WatchdogSec it restarts a worker whose loop stops sending WATCHDOG=1.
"""

from __future__ import annotations

import logging
import socket
import time

logger = logging.getLogger(__name__)


class Notifier:
    """Sends notify messages when NOTIFY_SOCKET is set; does nothing otherwise."""

    def __init__(self, socket_path: str | None, *, watchdog_usec: int | None = None) -> None:
        self.address = None
        if socket_path:
            self.address = "\0" + socket_path[1:] if socket_path.startswith("@") else socket_path
        self.watchdog_interval_s = watchdog_usec / 2_000_000 if watchdog_usec else None
        self._last_watchdog = 0.0

    def send(self, message: str) -> None:
        """Send one notify message; a failure is logged, never raised."""
        if self.address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message.encode(), self.address)
        except OSError as exc:
            logger.warning(
                "could not notify systemd (%s): %s",
                message,
                exc,
                extra={"event": "notify_failed"},
            )

    def ready(self) -> None:
        """The worker has started."""
        self.send("READY=1")

    def stopping(self) -> None:
        """The worker is shutting down."""
        self.send("STOPPING=1")

    def keep_alive(self) -> None:
        """WATCHDOG=1, at most twice per watchdog interval."""
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic()
        if now - self._last_watchdog >= self.watchdog_interval_s / 2:
            self._last_watchdog = now
            self.send("WATCHDOG=1")
