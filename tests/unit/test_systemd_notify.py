"""The systemd notify protocol, received on a real datagram socket as systemd would."""

import logging
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import Settings
from app.ops.systemd import Notifier


def notifier_for(environ: dict[str, str]) -> Notifier:
    """The Notifier as `cronlock worker` builds it, from NOTIFY_SOCKET and WATCHDOG_USEC."""
    settings = Settings.from_env(environ)
    return Notifier(settings.notify_socket, watchdog_usec=settings.watchdog_usec)


def received(sock: socket.socket) -> list[str]:
    """Every datagram waiting on `sock`; a local datagram is queued before sendto returns."""
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound AF_UNIX datagram socket, and its path for NOTIFY_SOCKET."""
    path = str(tmp_path / "notify")
    assert len(path) < 100, "AF_UNIX paths are limited to 108 bytes"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.setblocking(False)
        yield sock, path


def test_ready_and_stopping_arrive(systemd):
    sock, path = systemd
    notifier = notifier_for({"NOTIFY_SOCKET": path})
    notifier.ready()
    notifier.stopping()
    assert received(sock) == ["READY=1", "STOPPING=1"]


def test_an_abstract_socket_is_named_with_a_leading_at():
    name = f"cronlock-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        notifier_for({"NOTIFY_SOCKET": f"@{name}"}).ready()
        assert received(sock) == ["READY=1"]


def test_watchdog_is_not_sent_again_within_a_quarter_of_watchdog_sec(systemd):
    sock, path = systemd
    notifier = notifier_for({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "60000000"})
    assert notifier.watchdog_interval_s == 30.0  # half of WatchdogSec
    for _ in range(5):
        notifier.keep_alive()
    assert received(sock) == ["WATCHDOG=1"]


def test_watchdog_is_sent_again_once_the_interval_allows(systemd):
    sock, path = systemd
    notifier = notifier_for({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000"})  # 2 ms
    for _ in range(3):
        notifier.keep_alive()
        time.sleep(0.002)  # longer than half the 1 ms interval
    assert received(sock) == ["WATCHDOG=1"] * 3


@pytest.mark.parametrize("watchdog", [{}, {"WATCHDOG_USEC": "0"}])
def test_no_watchdog_without_a_watchdog_interval(systemd, watchdog: dict[str, str]):
    sock, path = systemd
    notifier = notifier_for({"NOTIFY_SOCKET": path, **watchdog})
    notifier.keep_alive()
    notifier.ready()
    assert received(sock) == ["READY=1"]


@pytest.mark.parametrize("environ", [{}, {"NOTIFY_SOCKET": "  "}])
def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch, environ):
    def no_socket(*args, **kwargs):
        raise AssertionError("a socket was opened")

    notifier = notifier_for(environ)
    assert notifier.address is None
    monkeypatch.setattr(socket, "socket", no_socket)
    notifier.ready()
    notifier.keep_alive()
    notifier.stopping()
    Notifier(None, watchdog_usec=2000).keep_alive()


def test_a_socket_nobody_listens_on_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    notifier = notifier_for({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with caplog.at_level(logging.WARNING, logger="app.ops.systemd"):
        notifier.ready()
    [record] = caplog.records
    assert record.getMessage().startswith("could not notify systemd (READY=1): [Errno 2]")
    assert record.event == "notify_failed"
