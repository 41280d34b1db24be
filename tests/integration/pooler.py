"""PgBouncer in front of the test server, for the tests that run cronlock through a pooler.

`pgbouncer_path` finds Debian's `pgbouncer`, installing the package once per session
when it is missing and we are root with apt-get; otherwise the tests skip, saying why.
`start_pgbouncer` runs one in the foreground on a free loopback port, with its
configuration in the test's folder, in front of one database of the test server.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from app.config import normalize_database_url

PACKAGE = "pgbouncer"
# Debian puts it in /usr/sbin, which a non-root PATH often lacks.
CANDIDATES = ("pgbouncer", "/usr/sbin/pgbouncer")
# Per apt-get command: the install runs inside the first pooler test's setup, which
# pytest-timeout (120 s) bounds as well.
INSTALL_TIMEOUT_S = 50


def find_pgbouncer() -> str | None:
    """The pgbouncer executable, if one is installed."""
    for candidate in CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def install_pgbouncer(log: Path) -> str:
    """Install Debian's pgbouncer (root and apt-get only); the reason it could not, else ''."""
    if os.geteuid() != 0:
        return "pgbouncer is not installed and we are not root: apt-get install pgbouncer"
    if shutil.which("apt-get") is None:
        return "pgbouncer is not installed and there is no apt-get to install it with"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with log.open("w") as out:
        for command in (
            ["apt-get", "update", "-q"],
            ["apt-get", "install", "-y", "-q", PACKAGE],
        ):
            try:
                done = subprocess.run(
                    command, stdout=out, stderr=out, env=env, timeout=INSTALL_TIMEOUT_S, check=False
                )
            except subprocess.TimeoutExpired:
                return f"`{' '.join(command)}` took over {INSTALL_TIMEOUT_S} s (log: {log})"
            if done.returncode != 0:
                return f"`{' '.join(command)}` failed with exit {done.returncode} (log: {log})"
    return ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _quoted(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


@dataclass(frozen=True)
class Pooler:
    """A running PgBouncer: its pool mode and the SQLAlchemy URL of the database behind it."""

    mode: str
    url: str
    log_path: Path

    def log(self) -> str:
        """What PgBouncer has logged so far."""
        return self.log_path.read_text()


@contextmanager
def start_pgbouncer(executable: str, db_url: str, mode: str, folder: Path) -> Iterator[Pooler]:
    """Run PgBouncer in `mode` in front of `db_url`'s database until the block ends."""
    server = make_url(db_url)
    user = server.username or "postgres"
    port = _free_port()
    folder = folder / f"pgbouncer-{mode}"
    folder.mkdir()
    auth_file = folder / "users.txt"
    auth_file.write_text(f"{_quoted(user)} {_quoted(server.password or '')}\n")
    target = [f"host={server.host or '127.0.0.1'}", f"port={server.port or 5432}", f"user={user}"]
    if server.password:
        target.append(f"password={server.password}")
    host_in_query = server.query.get("host")  # a Unix socket folder
    if isinstance(host_in_query, str):
        target[0] = f"host={host_in_query}"
    config = folder / "pgbouncer.ini"
    lines = [
        "[databases]",
        f"{server.database} = {' '.join(target)} dbname={server.database}",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {port}",
        "unix_socket_dir =",
        "auth_type = trust",
        f"auth_file = {auth_file}",
        f"pool_mode = {mode}",
        "max_client_conn = 200",
        "default_pool_size = 40",
        "server_check_delay = 0",
    ]
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root. It reads its files first, then becomes
        # this user: the owner of the server's socket folder (the embedded server's
        # data folder, closed to others), else the packaged `postgres`.
        lines.append(f"user = {_run_as(host_in_query)}")
    config.write_text("\n".join(lines) + "\n")
    log_path = folder / "pgbouncer.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [executable, str(config)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )
    try:
        _wait_listening(process, port, log_path)
        url = server.set(host="127.0.0.1", port=port, password=None, query={})
        yield Pooler(mode, normalize_database_url(url.render_as_string(False)), log_path)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _run_as(socket_folder: object) -> str:
    if isinstance(socket_folder, str) and Path(socket_folder).is_dir():
        return pwd.getpwuid(Path(socket_folder).stat().st_uid).pw_name
    return "postgres"


def _wait_listening(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"pgbouncer exited with {process.returncode}: {log_path.read_text()}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"pgbouncer never listened on port {port}: {log_path.read_text()}")
