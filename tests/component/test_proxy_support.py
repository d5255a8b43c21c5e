"""Proxy fixtures and helpers (``proxy_*``), imported by the other ``test_proxy_*`` modules.

The real session port over TLS on 127.0.0.1:0, a real app (Twisted web + Autobahn echo,
Basic auth, served under SUBFOLDER ``/<session_id>/``) and an in-memory SessionDirectory.
Not a ``conftest.py``: a second ``conftest`` module would shadow ``tests/conftest.py`` for
``from conftest import ...`` (rootdir import mode, no packages). The leftover-delayed-call
check is the autouse fixture of ``tests/conftest.py``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet import reactor as _global_reactor
from twisted.internet import ssl, task
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort, IPushProducer
from twisted.protocols.policies import WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web import server
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from twisted.web.resource import Resource
from zope.interface import implementer

from sealskin.model import SessionRoute
from sealskin.proxy.http import HttpLimits
from sealskin.proxy.site import ProxyRoot, build_root, build_site
from sealskin.proxy.tls import ensure_self_signed, server_context_factory
from sealskin.proxy.ws import WsLimits, _ReactorTimer

reactor: Any = _global_reactor
APP_USER, APP_PASSWORD = "abc", "s3cret"
APP_AUTH = "Basic " + base64.b64encode(f"{APP_USER}:{APP_PASSWORD}".encode()).decode()
PATTERN = bytes(range(256)) * 256  # 64 KiB


def pattern_bytes(offset: int, size: int) -> bytes:
    start = offset % len(PATTERN)
    out = PATTERN[start:start + size]
    while len(out) < size:
        out += PATTERN[: size - len(out)]
    return out


class InMemoryDirectory:
    """Test SessionDirectory with a real in-memory token/cookie table.

    The real implementation is orchestration's (persisted cookie digests, idle reaping); this one
    keeps the same contract: single-use tokens, constant-time compares, end callbacks.
    """

    def __init__(self) -> None:
        self.routes: dict[str, SessionRoute] = {}
        self._tokens: dict[str, str] = {}
        self._cookies: dict[str, set[str]] = {}
        self._callbacks: list[Callable[[str], None]] = []
        self.touched: list[str] = []

    def add(self, route: SessionRoute) -> str:
        self.routes[route.session_id] = route
        token = secrets.token_urlsafe(32)
        self._tokens[route.session_id] = token
        return token

    def route(self, session_id: str) -> SessionRoute | None:
        return self.routes.get(session_id)

    async def redeem(self, session_id: str, access_token: str) -> str | None:
        expected = self._tokens.get(session_id)
        if expected is None or not hmac.compare_digest(expected.encode(), access_token.encode()):
            return None
        del self._tokens[session_id]
        cookie = secrets.token_urlsafe(32)
        self._cookies.setdefault(session_id, set()).add(cookie)
        return cookie

    def admit(self, session_id: str, cookie_value: str) -> bool:
        if session_id not in self.routes:
            return False
        return any(hmac.compare_digest(c.encode(), cookie_value.encode())
                   for c in self._cookies.get(session_id, ()))

    def touch(self, session_id: str) -> None:
        self.touched.append(session_id)

    def on_session_end(self, callback: Callable[[str], None]) -> None:
        self._callbacks.append(callback)

    def end(self, session_id: str) -> None:
        self.routes.pop(session_id, None)
        self._cookies.pop(session_id, None)
        for callback in self._callbacks:
            callback(session_id)


class CountingFactory(WrappingFactory):
    """Counts connections ever made and tracks live ones."""

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)
        self.connections_made = 0

    def registerProtocol(self, p: Any) -> None:
        self.connections_made += 1
        super().registerProtocol(p)


@implementer(IPushProducer)
class PatternProducer:
    """The app's streaming download: writes until paused, records pauses."""

    def __init__(self, app: FakeApp, request: server.Request, total: int) -> None:
        self._app, self._request, self._total = app, request, total
        self.sent = 0
        self.paused = False
        self.stopped = False
        request.registerProducer(self, True)
        reactor.callLater(0, self._produce)

    def _produce(self) -> None:
        while not self.paused and not self.stopped and self.sent < self._total:
            size = min(65536, self._total - self.sent)
            chunk = pattern_bytes(self.sent, size)
            self.sent += size
            self._app.download_sent = self.sent
            self._request.write(chunk)
        if self.sent >= self._total and not self.stopped:
            self.stopped = True
            self._request.unregisterProducer()
            self._request.finish()

    def pauseProducing(self) -> None:
        self.paused = True
        self._app.download_pauses += 1

    def resumeProducing(self) -> None:
        if self.paused:
            self.paused = False
            self._produce()

    def stopProducing(self) -> None:
        self.stopped = True


class EchoWs(WebSocketServerProtocol):
    """The app's WebSocket: checks Basic auth, picks a known subprotocol, echoes."""

    app: FakeApp

    def onConnect(self, request: ConnectionRequest) -> str | None:
        if request.headers.get("authorization") != APP_AUTH:
            raise ConnectionDeny(401, "no app credentials")
        self.factory.app.ws_requests.append(request)
        for offered in request.protocols:
            if offered in ("selkies", "chat"):
                return offered
        return None

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if not isBinary and payload.startswith(b"close:"):
            self.sendClose(int(payload[6:]), "bye")
            return
        self.sendMessage(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.app.ws_closes.append(code)


class FakeApp(Resource):
    """The app container: Basic auth, everything under ``/<session_id>/`` (SUBFOLDER)."""

    isLeaf = True

    def __init__(self, session_ids: set[str]) -> None:
        super().__init__()
        self.session_ids = session_ids
        self.seen: list[dict[str, Any]] = []
        self.held: list[server.Request] = []
        self.download_sent = 0
        self.download_pauses = 0
        self.ws_requests: list[ConnectionRequest] = []
        self.ws_closes: list[int | None] = []
        factory = WebSocketServerFactory(reactor=reactor)
        factory.protocol = EchoWs
        factory.app = self
        factory.setProtocolOptions(maxMessagePayloadSize=0, maxFramePayloadSize=0)
        factory._batched_timer = _ReactorTimer(reactor)
        self._ws = WebSocketResource(factory)

    def render(self, request: server.Request) -> Any:
        if request.getHeader(b"authorization") != APP_AUTH.encode():
            request.setResponseCode(401)
            return b"app auth"
        path, _, query = request.uri.partition(b"?")
        parts = path.split(b"/", 2)
        if len(parts) < 3 or parts[1].decode() not in self.session_ids:
            request.setResponseCode(404)
            return b"not under SUBFOLDER"
        tail = b"/" + parts[2]
        if tail == b"/websockify" and request.getHeader(b"upgrade"):
            return self._ws.render(request)
        if tail == b"/big":
            PatternProducer(self, request, int(query.split(b"=")[1]))
            return server.NOT_DONE_YET
        if tail == b"/slow":
            self.held.append(request)
            return server.NOT_DONE_YET
        body = request.content.read()
        seen = {
            "method": request.method.decode(),
            "uri": request.uri.decode(),
            "headers": {k.decode().lower(): [v.decode() for v in vs]
                        for k, vs in request.requestHeaders.getAllRawHeaders()},
            "body_len": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
        self.seen.append(seen)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"x-app", b"yes")
        request.setHeader(b"keep-alive", b"timeout=5")
        return json.dumps(seen).encode()


@implementer(IPolicyForHTTPS)
class TrustOne:
    def __init__(self, cert_pem: bytes) -> None:
        self._trust = ssl.Certificate.loadPEM(cert_pem)

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return ssl.optionsForClientTLS("localhost", trustRoot=self._trust)


@attrs.define
class ProxyEnv:
    port: int
    app_port: int
    root: ProxyRoot
    directory: InMemoryDirectory
    app: FakeApp
    app_factory: CountingFactory
    proxy_factory: CountingFactory
    cert_pem: bytes
    client_pool: HTTPConnectionPool
    agent: Agent
    session_id: str
    token: str
    other_session_id: str
    other_token: str
    _ports: list[IListeningPort]

    def url(self, path: str) -> bytes:
        return f"https://localhost:{self.port}{path}".encode()

    def client_tls(self) -> Any:
        return ssl.optionsForClientTLS("localhost", trustRoot=ssl.Certificate.loadPEM(self.cert_pem))


async def _wait_for(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = reactor.seconds() + seconds
    while not predicate():
        if reactor.seconds() > deadline:
            raise AssertionError("condition not met in time")
        await task.deferLater(reactor, 0.01)


wait_for = _wait_for


@pytest.fixture(scope="session")
def proxy_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    assert ensure_self_signed(cert, key, "localhost")
    return cert, key


@pytest_twisted.async_yield_fixture()
async def proxy_make(proxy_cert: tuple[Path, Path]) -> AsyncIterator[Callable[..., Awaitable[ProxyEnv]]]:
    """Builds a ProxyEnv (limits as keyword arguments); tears everything down afterwards."""
    envs: list[ProxyEnv] = []

    async def make(http_limits: HttpLimits = HttpLimits(), ws_limits: WsLimits = WsLimits(),
                   app_port: int | None = None) -> ProxyEnv:
        cert, key = proxy_cert
        directory = InMemoryDirectory()
        sid, other = str(uuid.uuid4()), str(uuid.uuid4())
        app = FakeApp({sid, other})
        app_factory = CountingFactory(server.Site(app))
        ports: list[IListeningPort] = []
        app_listen = reactor.listenTCP(0, app_factory, interface="127.0.0.1")
        ports.append(app_listen)
        port_for_routes = app_port if app_port is not None else app_listen.getHost().port
        token = directory.add(SessionRoute(sid, "127.0.0.1", port_for_routes, APP_AUTH))
        other_token = directory.add(SessionRoute(other, "127.0.0.1", port_for_routes, APP_AUTH))
        api = Resource()
        api_v = Resource()
        api_v.putChild(b"status", _StaticJson({"ok": True}))
        api.putChild(b"api", api_v)
        root = build_root(api=api, directory=directory, reactor=reactor,
                          http_limits=http_limits, ws_limits=ws_limits)
        # Count below TLS: a wrapper between TLS and HTTP would hide TLS from Autobahn.
        proxy_factory = CountingFactory(
            TLSMemoryBIOFactory(server_context_factory(cert, key), False, build_site(root)))
        listening = reactor.listenTCP(0, proxy_factory, interface="127.0.0.1")
        ports.append(listening)
        pool = HTTPConnectionPool(reactor, persistent=False)
        env = ProxyEnv(listening.getHost().port, app_listen.getHost().port, root, directory, app,
                       app_factory, proxy_factory, cert.read_bytes(), pool,
                       Agent(reactor, contextFactory=TrustOne(cert.read_bytes()), pool=pool),
                       sid, token, other, other_token, ports)
        envs.append(env)
        return env

    yield make
    for env in envs:
        for held in env.app.held:
            if not held._disconnected and not held.finished:
                held.channel.transport.abortConnection()
        for port in env._ports:
            await port.stopListening()
        await env.root.close()
        await env.client_pool.closeCachedConnections()
        await _wait_for(lambda: not env.proxy_factory.protocols and not env.app_factory.protocols)


class _StaticJson(Resource):
    isLeaf = True

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__()
        self._body = body

    def render(self, request: server.Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(self._body).encode()


async def fetch(env: ProxyEnv, method: bytes, path: str, headers: dict[bytes, list[bytes]] | None = None,
                body: bytes | None = None, producer: Any = None) -> tuple[Any, bytes]:
    """One request through the proxy (new TLS connection each time); returns (response, body)."""
    if body is not None:
        producer = FileBodyProducer(io.BytesIO(body))
    response = await env.agent.request(method, env.url(path), Headers(headers or {}), producer)
    return response, await readBody(response)


def cookie_of(response: Any) -> tuple[str, str]:
    """(cookie pair "name=value", full Set-Cookie line) from a gate response."""
    line = response.headers.getRawHeaders(b"set-cookie")[0].decode()
    return line.split(";", 1)[0], line


async def open_session(env: ProxyEnv, session_id: str | None = None, token: str | None = None) -> str:
    """Redeems the session link; returns the ``Cookie`` header value."""
    sid = session_id or env.session_id
    tok = token or (env.token if sid == env.session_id else env.other_token)
    response, _ = await fetch(env, b"GET", f"/{sid}/?access_token={tok}")
    assert response.code == 303
    return cookie_of(response)[0]


__all__ = ["ProxyEnv", "InMemoryDirectory", "FakeApp", "APP_AUTH", "PATTERN", "pattern_bytes",
           "wait_for", "fetch", "cookie_of", "open_session", "Deferred"]
