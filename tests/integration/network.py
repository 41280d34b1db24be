"""A TCP path to the test server, and a network namespace whose cable can be cut.

The test servers listen on Unix sockets, where libpq has no TCP keepalives. A
`Relay` gives clients a TCP address in front of one. A `CuttableNetwork` puts a
relay and its clients in two network namespaces joined by a virtual cable, and
`cut()` silences the cable as a failover or a lost host does: no FIN, no RST,
no error, only packets that never come back.

Run as a module, this file is the relay inside the namespace.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import make_url

LOOPBACK = "127.0.0.1"
# A documentation-only network (RFC 5737) between the two namespaces: routable nowhere.
CLIENT_ADDRESS, SERVER_ADDRESS = "192.0.2.1", "192.0.2.2"

# The relay's side of each connection gives up on a silent peer in about 3 s, as a
# server with TCP keepalives does: the server's session then ends, its locks freed.
_RELAY_KEEPALIVE = (
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1),
    (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1),
    (socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2),
)


def upstream_of(libpq_url: str) -> str | tuple[str, int]:
    """The server's socket: a Unix socket's path, or a TCP (host, port)."""
    params = conninfo_to_dict(libpq_url)
    host = str(params.get("host") or "/tmp")
    port = int(params.get("port") or 5432)
    if host.startswith("/"):
        return f"{host}/.s.PGSQL.{port}"
    return (host, port)


def through(sqlalchemy_url: str, port: int, host: str = LOOPBACK, **query: str) -> str:
    """`sqlalchemy_url` rewritten to reach its server at `host`:`port`, plus `query`."""
    url = make_url(sqlalchemy_url).difference_update_query(["host", "port"])
    url = url.set(host=host, port=port).update_query_dict(query)
    return url.render_as_string(hide_password=False)


class Relay:
    """Accept TCP connections on `host` and pipe each to the server's socket."""

    def __init__(self, upstream: str | tuple[str, int], host: str = LOOPBACK) -> None:
        self._upstream = upstream
        self._listener = socket.create_server((host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._sockets: list[socket.socket] = []
        self._loss: AnswerLoss | None = None

    def break_over(
        self,
        sent: bytes,
        *,
        after: bytes = b"",
        reaches_server: bool,
        outage: bool = False,
        times: int = 1,
    ) -> AnswerLoss:
        """End a connection over a message: the first holding `sent`, once `after` was sent.

        With `reaches_server`, the server gets the message and acts on it (commits,
        say), and only its answer is lost; without, the message is lost too. Either
        way the client sees the same broken connection, as when a network fails at
        the wrong moment. `times` connections end so, one after another. With
        `outage`, new connections are refused from then on, until
        `AnswerLoss.outage` is cleared.
        """
        self._loss = AnswerLoss(
            sent, after, reaches_server=reaches_server, outage=outage, times=times
        )
        return self._loss

    def start(self) -> Relay:
        """Begin accepting in a daemon thread."""
        self._threads[0].start()
        return self

    def close(self) -> None:
        """Stop accepting, end every piped connection, and wait for the threads."""
        for sock in [self._listener, *self._sockets]:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked on it
        for thread in self._threads:
            thread.join(timeout=10)
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._loss is not None and self._loss.outage.is_set():
                client.close()  # the server is away: nothing answers
                continue
            for option in _RELAY_KEEPALIVE:
                client.setsockopt(*option)
            try:
                server = self._connect()
            except OSError:
                client.close()
                continue
            self._sockets += [client, server]
            line = _Line(lambda: self._loss)  # armed later too, on pooled connections
            for source, sink, passes in (
                (client, server, line.from_client),
                (server, client, line.from_server),
            ):
                thread = threading.Thread(target=_pipe, args=(source, sink, passes), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _connect(self) -> socket.socket:
        if isinstance(self._upstream, str):
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                server.connect(self._upstream)
            except OSError:
                server.close()
                raise
            return server
        return socket.create_connection(self._upstream)


class AnswerLoss:
    """The message over which to end a connection: see `Relay.break_over`."""

    def __init__(
        self, sent: bytes, after: bytes, *, reaches_server: bool, outage: bool, times: int
    ) -> None:
        self.sent = sent
        self.after = after
        self.reaches_server = reaches_server
        self.left = times  # connections still to end
        self.lost = threading.Event()  # set once the last of them has ended
        self.outage = threading.Event()  # set while new connections are refused
        self._starts_outage = outage

    def take(self) -> bool:
        """True for each message whose answer is lost; False once none is left to lose."""
        if self.left == 0:
            return False
        self.left -= 1
        if self.left == 0:
            if self._starts_outage:
                self.outage.set()
            self.lost.set()
        return True


class _Line:
    """One relayed connection, watched for the message over which to end it."""

    def __init__(self, loss: Callable[[], AnswerLoss | None]) -> None:
        self._loss = loss
        self._armed = False
        self._cut = False

    def from_client(self, data: bytes) -> bool:
        """Pass everything on but the message to lose, unless it is to reach the server."""
        loss = self._loss()
        if loss is None or loss.lost.is_set():
            return True
        # The message that arms the line may hold the one to lose too (b"" arms at once).
        self._armed = self._armed or loss.after in data
        # Cut before the message goes on, so its answer can only come after.
        self._cut = self._armed and loss.sent in data and loss.take()
        return loss.reaches_server or not self._cut

    def from_server(self, _data: bytes) -> bool:
        """Pass the server's answers on until the message to lose is sent."""
        return not self._cut


def _pipe(source: socket.socket, sink: socket.socket, passes: Callable[[bytes], bool]) -> None:
    """Copy what `passes` until either end stops; then end both, and close the end read."""
    with suppress(OSError):
        while (data := source.recv(65536)) and passes(data):
            sink.sendall(data)
    for end in (source, sink):
        with suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)
    source.close()


def namespaces_available() -> bool:
    """True when this process may make network namespaces and wire them (root, on Linux)."""
    if not (shutil.which("ip") and shutil.which("nsenter")):
        return False
    try:
        done = subprocess.run(
            ["unshare", "-n", "true"], check=False, capture_output=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _in(pid: int, *argv: str) -> list[str]:
    return ["nsenter", f"--net=/proc/{pid}/ns/net", "--", *argv]


def _await_own_namespace(pid: int, timeout_s: float = 10) -> None:
    """Return once `pid` has left this process's network namespace.

    Popen returns before `unshare` has made the new namespace: wiring a cable to
    that pid too early would put one end of it on the host.
    """
    here = os.readlink("/proc/self/ns/net")
    deadline = time.monotonic() + timeout_s
    while os.readlink(f"/proc/{pid}/ns/net") == here:
        if time.monotonic() > deadline:
            raise RuntimeError(f"process {pid} never entered a network namespace of its own")
        time.sleep(0.01)


def _run(argv: Sequence[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


class CuttableNetwork:
    """Two network namespaces joined by a virtual cable: clients in one, a relay in the other.

    Bringing the relay's end of the cable down is a cut: the clients' packets
    go out and nothing comes back, so their kernel reports a timeout, as it
    does for a host that is gone.
    """

    def __init__(self, libpq_url: str) -> None:
        upstream = upstream_of(libpq_url)
        if not isinstance(upstream, str):
            raise ValueError("a cuttable network needs a server on a Unix socket")
        here = Path(__file__).resolve().parents[2]
        # Each namespace lives as long as its first process: these two end when
        # their stdin closes.
        self._processes: list[subprocess.Popen[str]] = []
        self._client = self._start(["unshare", "-n", "cat"], here)
        self._server = self._start(
            ["unshare", "-n", sys.executable, "-m", "tests.integration.network", upstream], here
        )
        try:
            for process in self._processes:
                _await_own_namespace(process.pid)
            self._wire()
            stdin, stdout = self._server.stdin, self._server.stdout
            assert stdin is not None
            assert stdout is not None
            stdin.write("wired\n")  # the relay's address exists: it may listen
            stdin.flush()
            line = stdout.readline()  # the relay's port, once it listens
            if not line.strip().isdigit():
                raise RuntimeError(f"the relay in the namespace did not start: {line!r}")
            self.port = int(line)
            self.address = SERVER_ADDRESS
        except BaseException:
            self.close()
            raise

    def _start(self, argv: list[str], cwd: Path) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=cwd
        )
        self._processes.append(process)
        return process

    def _wire(self) -> None:
        client, server = self._client.pid, self._server.pid
        _run(
            ["ip", "link", "add", "cl0", "netns", str(client), "type", "veth"]  # noqa: RUF005
            + ["peer", "name", "sv0", "netns", str(server)]
        )
        for pid, device, address in (
            (client, "cl0", CLIENT_ADDRESS),
            (server, "sv0", SERVER_ADDRESS),
        ):
            _run(_in(pid, "ip", "addr", "add", f"{address}/30", "dev", device))
            _run(_in(pid, "ip", "link", "set", device, "up"))
        _run(_in(client, "ip", "link", "set", "lo", "up"))

    def __enter__(self) -> CuttableNetwork:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def inside(self, argv: Sequence[str]) -> list[str]:
        """`argv` as a command that runs on the clients' side of the cable."""
        return _in(self._client.pid, *argv)

    def cut(self) -> None:
        """Bring the relay's end of the cable down: silence from now on."""
        _run(_in(self._server.pid, "ip", "link", "set", "sv0", "down"))

    def heal(self) -> None:
        """Bring it up again."""
        _run(_in(self._server.pid, "ip", "link", "set", "sv0", "up"))

    def close(self) -> None:
        """End both namespaces' processes; the namespaces and the cable go with them."""
        for process in self._processes:
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()  # the relay's and cat's signal to stop
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def main(argv: Sequence[str]) -> None:
    """Once told the cable is wired, relay to the Unix socket argv[0] until stdin closes."""
    sys.stdin.readline()
    relay = Relay(argv[0], host=SERVER_ADDRESS).start()
    print(relay.port, flush=True)
    sys.stdin.read()
    relay.close()
    os._exit(0)  # the piping threads are daemons; don't wait on a cut connection


if __name__ == "__main__":
    main(sys.argv[1:])
