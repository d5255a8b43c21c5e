"""A session-proxy worker process: more cores for the data plane (``--proxy-workers``).

The primary process listens on the TLS port and hands the listening socket to
each worker (file descriptor 3); the kernel spreads new connections over all of
them. A worker proxies session traffic itself (HTTP and WebSocket, the same
code as the primary) and forwards everything that needs the primary's state --
``/api``, ``/public`` and the redemption of single-use URL tokens -- to the
primary's loopback-only internal listener, authenticated by a per-start secret.

Control channel, JSON lines: the primary writes ``{"op": "add", "route": ...}``
and ``{"op": "remove", "session_id": ...}`` to the worker's stdin; the worker
writes ``{"op": "touch", "sessions": [...]}`` to its stdout every few seconds so
the primary's idle reaper sees proxied traffic. Cookies are HMACs (crypto/
cookies.py), so a worker checks them without asking anyone.

Run as ``python -m sealskin.proxy.worker`` with ``SEALSKIN_WORKER`` (JSON) set.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import reactor as _reactor
from twisted.internet import stdio, task
from twisted.internet.interfaces import IReactorSocket
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver
from twisted.protocols.basic import LineOnlyReceiver
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web import server
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource

from sealskin.crypto import cookies
from sealskin.httpbody import BytesBody, api_request_factory
from sealskin.model import SessionRoute
from sealskin.proxy import tls
from sealskin.proxy.http import HttpLimits, StreamingRequest
from sealskin.proxy.site import build_root, build_site
from sealskin.proxy.ws import WsLimits

log = Logger()

INTERNAL_HEADER = b"x-sealskin-internal"
TOUCH_EVERY_SECONDS = 2.0
_HOP = {b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade",
        b"proxy-connection", b"host", b"content-length", b"x-forwarded-for",
        INTERNAL_HEADER}


@attrs.frozen
class WorkerConfig:
    """What the primary tells a worker (``SEALSKIN_WORKER``); secrets stay in memory."""

    cert: str
    key: str
    cookie_key_path: str
    internal_port: int
    internal_secret: str
    max_body_bytes: int
    max_upload_body_bytes: int
    max_app_body_bytes: int
    proxy_timeout_seconds: float
    ws_ping_seconds: float
    ws_ping_timeout_seconds: float
    ws_max_message_bytes: int
    access_log: bool = False
    max_header_bytes: int = 16384


class WorkerDirectory:
    """A ``SessionDirectory`` fed by the primary's control channel."""

    def __init__(self, cookie_key: bytes, redeem: Callable[[str, str], Any]) -> None:
        self._cookie_key = cookie_key
        self._redeem = redeem
        self.routes: dict[str, SessionRoute] = {}
        self.touched: set[str] = set()
        self._end: list[Callable[[str], None]] = []

    def route(self, session_id: str) -> SessionRoute | None:
        return self.routes.get(session_id)

    async def redeem(self, session_id: str, access_token: str) -> str | None:
        found: str | None = await self._redeem(session_id, access_token)
        return found

    def admit(self, session_id: str, cookie_value: str) -> bool:
        return (session_id in self.routes
                and cookies.valid(self._cookie_key, session_id, cookie_value))

    def touch(self, session_id: str) -> None:
        self.touched.add(session_id)

    def on_session_end(self, callback: Callable[[str], None]) -> None:
        self._end.append(callback)

    def remove(self, session_id: str) -> None:
        if self.routes.pop(session_id, None) is not None:
            for callback in self._end:
                callback(session_id)


class Primary:
    """Calls to the primary's internal listener (loopback, secret header)."""

    def __init__(self, reactor: Any, port: int, secret: str) -> None:
        self._base = f"http://127.0.0.1:{port}"
        self._secret = secret.encode()
        self._agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=True))

    def headers(self, extra: Headers | None = None) -> Headers:
        out = Headers()
        if extra is not None:
            for name, values in extra.getAllRawHeaders():
                if name.lower() not in _HOP:
                    out.setRawHeaders(name, list(values))
        out.setRawHeaders(INTERNAL_HEADER, [self._secret])
        return out

    async def redeem(self, session_id: str, access_token: str) -> str | None:
        body = json.dumps({"session_id": session_id, "access_token": access_token}).encode()
        response = await self._agent.request(b"POST", f"{self._base}/internal/redeem".encode(),
                                             self.headers(), BytesBody(body))
        answer = await readBody(response)
        if response.code != 200:
            return None
        cookie = json.loads(answer).get("cookie")
        return cookie if isinstance(cookie, str) else None

    async def forward(self, request: server.Request) -> tuple[int, Headers, bytes]:
        """Sends ``request`` on to the primary (bodies here are small and capped)."""
        headers = self.headers(request.requestHeaders)
        peer = getattr(request.getClientAddress(), "host", None)
        if isinstance(peer, str):
            headers.setRawHeaders(b"x-forwarded-for", [peer.encode()])
        content = request.content.read() if request.content is not None else b""
        response = await self._agent.request(
            request.method, self._base.encode() + request.uri, headers,
            BytesBody(content) if content or request.method in (b"POST", b"PUT") else None)
        return response.code, response.headers, await readBody(response)


class Forward(Resource):
    """``/api`` and ``/public``: answered by the primary, relayed as they come back."""

    isLeaf = True

    def __init__(self, primary: Primary) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted leaves this untyped
        self._primary = primary

    def render(self, request: server.Request) -> int:
        from twisted.internet.defer import Deferred

        async def relay() -> None:
            try:
                code, headers, body = await self._primary.forward(request)
            except Exception:
                log.failure("forwarding {uri} to the primary", uri=request.uri)
                code, headers = 502, Headers({b"content-type": [b"application/json"]})
                body = b'{"detail": "The server is restarting; retry shortly."}'
            if getattr(request, "_disconnected", False):
                return
            request.setResponseCode(code)
            for name, values in headers.getAllRawHeaders():
                if name.lower() not in _HOP:
                    request.responseHeaders.setRawHeaders(name, list(values))
            request.write(body)
            request.finish()

        _ = Deferred.fromCoroutine(relay())
        return server.NOT_DONE_YET


class Control(LineOnlyReceiver):
    """The primary's instructions on stdin; touches go back on stdout."""

    delimiter = b"\n"
    MAX_LENGTH = 1024 * 1024

    def __init__(self, directory: WorkerDirectory, on_stop: Callable[[], None]) -> None:
        self._directory = directory
        self._on_stop = on_stop

    def lineReceived(self, line: bytes) -> None:
        message = json.loads(line)
        op = message.get("op")
        if op == "add":
            route = SessionRoute(**message["route"])
            self._directory.routes[route.session_id] = route
        elif op == "remove":
            self._directory.remove(message["session_id"])

    def report(self) -> None:
        touched, self._directory.touched = self._directory.touched, set()
        if touched and self.transport is not None:
            self.sendLine(json.dumps({"op": "touch", "sessions": sorted(touched)}).encode())  # type: ignore[no-untyped-call]  # Twisted leaves this untyped

    def connectionLost(self, reason: Any = None) -> None:
        self._on_stop()  # the primary went away: so do we


def run(reactor: Any, cfg: WorkerConfig, fd: int) -> None:
    """Builds the worker's site on the inherited socket and runs until told to stop."""
    primary = Primary(reactor, cfg.internal_port, cfg.internal_secret)
    directory = WorkerDirectory(cookies.load_or_create_key(cfg.cookie_key_path),
                                primary.redeem)
    forward = Forward(primary)
    root = build_root(api=forward, directory=directory, reactor=reactor,
                      children={b"public": forward},
                      http_limits=HttpLimits(response_timeout_seconds=cfg.proxy_timeout_seconds),
                      ws_limits=WsLimits.from_settings(
                          ping_seconds=cfg.ws_ping_seconds,
                          ping_timeout_seconds=cfg.ws_ping_timeout_seconds,
                          max_message_bytes=cfg.ws_max_message_bytes))
    site = build_site(root, access_log=cfg.access_log, max_head_bytes=cfg.max_header_bytes)
    site.requestFactory = api_request_factory(cfg.max_body_bytes, cfg.max_upload_body_bytes,
                                              cfg.max_app_body_bytes, StreamingRequest)
    context = tls.server_context_factory(Path(cfg.cert), Path(cfg.key))
    port = IReactorSocket(reactor).adoptStreamPort(
        fd, socket.AF_INET, TLSMemoryBIOFactory(context, False, site))  # type: ignore[arg-type]  # a wrapping factory is a server factory
    os.close(fd)  # adoptStreamPort duplicated it

    def stop() -> None:
        port.stopListening()
        root.ws.close()
        if reactor.running:
            reactor.stop()

    control = Control(directory, stop)
    stdio.StandardIO(control, reactor=reactor)
    ticker = task.LoopingCall(control.report)
    ticker.clock = reactor
    _ = ticker.start(TOUCH_EVERY_SECONDS, now=False)
    reactor.addSystemEventTrigger("before", "shutdown", stop)


def main() -> None:
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)],
                                     redirectStandardIO=False)
    cfg = WorkerConfig(**json.loads(os.environ.pop("SEALSKIN_WORKER")))
    run(_reactor, cfg, 3)
    _reactor.run()


if __name__ == "__main__":
    main()
