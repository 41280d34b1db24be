"""Real HTTP servers on loopback for the HTTP-job tests: a token endpoint and a target.

Each is a small Starlette app under uvicorn in a thread, answering from a script
(a queue of replies, then a default), and recording every request it saw, and
every client that went away before its answer.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route


@dataclass
class Reply:
    """One scripted answer. `hold`: never answer; wait for the client to go away."""

    status: int = 200
    json: Any = None
    text: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    hold: bool = False


@dataclass
class Seen:
    """A request as the server received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    at: float  # monotonic

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}

    @property
    def basic_auth(self) -> tuple[str, str] | None:
        value = self.headers.get("authorization", "")
        if not value.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(value[6:]).decode().partition(":")
        return user, password


class ScriptedServer:
    """A Starlette app on 127.0.0.1 under uvicorn in a thread, answering from `script`."""

    def __init__(self, default: Callable[[Seen], Reply]) -> None:
        self.default = default
        self.script: deque[Reply] = deque()
        self.seen: list[Seen] = []
        self.disconnected: list[Seen] = []
        self._lock = threading.Lock()
        app = Starlette(
            routes=[
                Route(
                    "/{path:path}", self._handle, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]
                )
            ]
        )
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                log_config=None,
                log_level="critical",
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=1,
            )
        )
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[self._socket])), daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def then(self, *replies: Reply) -> ScriptedServer:
        """Answer the next requests with `replies`, in order, then with the default."""
        with self._lock:
            self.script.extend(replies)
        return self

    def requests(self, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if path is None or s.path == path]

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    async def _handle(self, request: Request) -> Response:
        seen = Seen(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=await request.body(),
            at=time.monotonic(),
        )
        with self._lock:
            self.seen.append(seen)
            reply = self.script.popleft() if self.script else None
        reply = reply or self.default(seen)
        if reply.hold:
            while not await request.is_disconnected():
                await asyncio.sleep(0.01)
            with self._lock:
                self.disconnected.append(seen)
            return Response(status_code=499)
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        if reply.text is not None:
            return PlainTextResponse(reply.text, reply.status, headers=reply.headers)
        return JSONResponse(reply.json, reply.status, headers=reply.headers)


class TokenServer(ScriptedServer):
    """A client-credentials token endpoint at /oauth/token issuing `token-1`, `token-2`, …"""

    def __init__(self, *, expires_in: float = 3600) -> None:
        self.expires_in = expires_in
        self.issued: list[str] = []
        super().__init__(self._issue)

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth/token"

    def _issue(self, seen: Seen) -> Reply:
        token = f"token-{len(self.issued) + 1}"
        self.issued.append(token)
        return Reply(
            json={"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
        )


class TargetServer(ScriptedServer):
    """A service whose admin endpoint answers 200 `{"released": 3}` unless scripted."""

    def __init__(self) -> None:
        super().__init__(lambda seen: Reply(json={"released": 3}))


@contextmanager
def serving(*servers: ScriptedServer) -> Iterator[None]:
    for server in servers:
        server.start()
    try:
        yield
    finally:
        for server in servers:
            server.stop()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
