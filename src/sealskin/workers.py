"""The primary's side of ``--proxy-workers``: spawn, feed and stop the workers.

Workers (``sealskin.proxy.worker``) share the TLS port's listening socket and
proxy session traffic; they ask this process, over a loopback-only listener
guarded by a per-start secret, for everything that needs its state: the API,
``/public``, and the redemption of single-use URL tokens.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from typing import Any

import attrs
from twisted.internet import protocol
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web import server
from twisted.web.resource import IResource, Resource

from sealskin.model import SessionRoute
from sealskin.orchestration.sessions import Sessions
from sealskin.proxy.worker import INTERNAL_HEADER, WorkerConfig

log = Logger()


class _WorkerProcess(protocol.ProcessProtocol):
    def __init__(self, sessions: Sessions, number: int) -> None:
        self._sessions = sessions
        self.number = number
        self.ended: Deferred[None] = Deferred()
        self._buffer = b""
        self.touches = 0

    def connectionMade(self) -> None:
        for route in self._sessions.routes():
            self.add(route)

    def send(self, message: dict[str, Any]) -> None:
        if self.transport is not None:
            self.transport.write(json.dumps(message).encode() + b"\n")

    def add(self, route: SessionRoute) -> None:
        self.send({"op": "add", "route": attrs.asdict(route)})

    def remove(self, session_id: str) -> None:
        self.send({"op": "remove", "session_id": session_id})

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > 1024 * 1024:  # a worker gone mad: drop, do not grow
            self._buffer = b""
        for line in lines:
            if line.strip():
                self._line(line)

    def errReceived(self, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            log.info("proxy worker {n}: {line}", n=self.number, line=line)

    def _line(self, line: bytes) -> None:
        message = json.loads(line)
        if message.get("op") == "touch":
            self.touches += 1
            for session_id in message.get("sessions", ()):
                self._sessions.touch(str(session_id))

    def processEnded(self, reason: Any) -> None:
        log.info("proxy worker {n} ended", n=self.number)
        self.ended.callback(None)


class InternalRoot(Resource):
    """The primary's loopback listener for workers: the secret first, then
    ``/internal/redeem`` or the API-port tree (``/api``, ``/public``)."""

    def __init__(self, secret: str, sessions: Sessions, api_root: IResource) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted leaves this untyped
        self._secret = secret.encode()
        self._sessions = sessions
        self._api_root = api_root

    def getChildWithDefault(self, path: bytes, request: server.Request) -> IResource:
        offered = request.getHeader(INTERNAL_HEADER) or b""
        if not secrets.compare_digest(offered, self._secret):
            return _Refused()
        # the worker checked nothing about the client: its address is for rate limits only
        forwarded = request.getHeader(b"x-forwarded-for")
        if forwarded:
            request.forwarded_for = forwarded.decode("latin-1")  # type: ignore[attr-defined]  # read by api.edge.client_address
        if path == b"internal":
            return _Redeem(self._sessions)
        child: IResource = self._api_root.getChildWithDefault(path, request)
        return child


class _Refused(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted leaves this untyped

    def render(self, request: server.Request) -> bytes:
        request.setResponseCode(403)
        return b'{"detail": "Not allowed."}'


class _Redeem(Resource):
    isLeaf = True

    def __init__(self, sessions: Sessions) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted leaves this untyped
        self._sessions = sessions

    def render_POST(self, request: server.Request) -> int:
        async def answer() -> None:
            try:
                body = json.loads(request.content.read() if request.content else b"{}")
                cookie = await self._sessions.redeem(str(body["session_id"]),
                                                     str(body["access_token"]))
            except (ValueError, KeyError, TypeError, RecursionError):
                cookie = None
            request.setHeader(b"content-type", b"application/json")
            if cookie is None:
                request.setResponseCode(404)
                request.write(b'{"detail": "No such token."}')
            else:
                request.write(json.dumps({"cookie": cookie}).encode())
            request.finish()

        _ = Deferred.fromCoroutine(answer())
        return server.NOT_DONE_YET


class ProxyWorkers:
    """Spawns ``count`` workers on the TLS port's socket and keeps them informed."""

    def __init__(self, reactor: Any, sessions: Sessions, count: int) -> None:
        self._reactor = reactor
        self._sessions = sessions
        self._count = count
        self.secret = secrets.token_urlsafe(32)
        self.processes: list[_WorkerProcess] = []
        sessions.on_session_start(self._add)
        sessions.on_session_end(self._remove)

    def _add(self, route: SessionRoute) -> None:
        for p in self.processes:
            p.add(route)

    def _remove(self, session_id: str) -> None:
        for p in self.processes:
            p.remove(session_id)

    def start(self, listening_fd: int, cfg: WorkerConfig) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
               "SEALSKIN_WORKER": json.dumps(attrs.asdict(cfg))}
        for n in range(self._count):
            p = _WorkerProcess(self._sessions, n)
            self._reactor.spawnProcess(
                p, sys.executable, [sys.executable, "-m", "sealskin.proxy.worker"], env=env,
                childFDs={0: "w", 1: "r", 2: "r", 3: listening_fd})
            self.processes.append(p)
        log.info("started {count} proxy worker processes", count=self._count)

    async def stop(self) -> None:
        """Closes their control channel (they stop listening and exit), then waits."""
        for p in self.processes:
            if p.transport is not None:
                p.transport.closeStdin()
        for p in self.processes:
            if not p.ended.called:
                await p.ended
        self.processes.clear()
