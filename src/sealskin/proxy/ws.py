"""WebSocket bridging for session paths: browser <-> SealSkin <-> app, message by message.

The session resource hands requests carrying ``Upgrade: websocket`` to Autobahn's
``WebSocketResource``, which takes the connection over. Our server protocol's ``onConnect``:

1. re-checks the session cookie (the resource already did; the session may end meanwhile),
2. refuses an ``Origin`` whose host differs from the request's ``Host`` (cross-site WebSocket
   hijacking, upstream-protocol 10 W9), with 403; a request without ``Origin`` is not from a
   browser page and cannot be a cross-site one,
3. dials ``ws://<app><same path and query>`` with the app's Basic credentials and the browser's
   offered subprotocols, and accepts the browser with the subprotocol the app chose.

Messages are relayed whole (Autobahn reassembles fragments), close codes are carried across,
Autobahn answers pings itself and sends its own to the browser every
``auto_ping_interval_seconds`` so idle connections survive intermediaries. A session's end
closes both sides with 1001.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

import attrs
from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint
from twisted.internet.interfaces import IDelayedCall, IReactorTCP, IReactorTime
from twisted.logger import Logger
from twisted.web.http_headers import Headers
from twisted.web.server import Request

from sealskin.model import SessionRoute
from sealskin.proxy import SessionDirectory
from sealskin.proxy.gate import ACCESS_TOKEN, Gate, query_without, split_session_path

log = Logger()

GOING_AWAY = 1001
_NO_STATUS = 1005
_ABNORMAL = 1006
_BAD_GATEWAY = 1014  # RFC 6455 registry: "Bad Gateway"
_TOUCH_EVERY_SECONDS = 10.0


@attrs.frozen
class WsLimits:
    """WebSocket limits; payload sizes in bytes, 0 meaning unlimited (Autobahn's convention)."""

    auto_ping_interval_seconds: float = 30.0
    auto_ping_timeout_seconds: float = 30.0
    max_message_bytes: int = 64 * 1024 * 1024
    max_frame_bytes: int = 16 * 1024 * 1024
    connect_timeout_seconds: float = 10.0
    handshake_timeout_seconds: float = 10.0
    close_timeout_seconds: float = 5.0


def acceleration() -> dict[str, str]:
    """Which implementation Autobahn uses for UTF-8 validation and masking.

    ``nvx`` (Autobahn's own compiled CFFI code, since autobahn 25), ``wsaccel``, or ``python``.
    """
    from autobahn.websocket import utf8validator, xormasker

    def kind(module: str) -> str:
        if ".nvx." in module:
            return "nvx"
        if module.startswith("wsaccel"):
            return "wsaccel"
        return "python"

    return {
        "utf8validator": kind(utf8validator.Utf8Validator.__module__),
        "xormasker": kind(getattr(xormasker, "create_xor_masker").__module__),
    }


class _Timer:
    """What Autobahn needs of a timer call: ``cancel()``, harmless after firing."""

    def __init__(self, call: IDelayedCall) -> None:
        self._call = call

    def cancel(self) -> None:
        if self._call.active():
            self._call.cancel()


class _ReactorTimer:
    """Replaces Autobahn's batched timer (txaio's global loop, 200 ms buckets whose underlying
    delayed call outlives a cancel) with plain, cancellable calls on our reactor."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock

    def call_later(self, delay: float, func: Callable[..., Any], *args: Any, **kwargs: Any) -> _Timer:
        return _Timer(self._clock.callLater(delay, func, *args, **kwargs))


def _close(side: WebSocketServerProtocol | WebSocketClientProtocol, code: int | None,
           reason: str | None) -> None:
    """Closes one side with ``code`` (any valid code, 1001 included: ``sendClose`` allows only
    1000 and 3000-4999, so we send the frame ourselves)."""
    if side.state != side.STATE_OPEN:
        if side.state in (side.STATE_CONNECTING, side.STATE_PROXY_CONNECTING):
            side.dropConnection(abort=True)
        return
    if code is None or code == _NO_STATUS:
        side.sendCloseFrame()
        return
    payload = (reason or "").encode("utf-8")[:123]
    side.sendCloseFrame(code=code, reasonUtf8=payload or None)


class AppSide(WebSocketClientProtocol):
    """Our connection to the app; relays to its browser side."""

    browser: BrowserSide | None = None

    def __init__(self) -> None:
        super().__init__()
        self.opened: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        # Messages are relayed as they come: Nagle would hold small ones for the app's ACK.
        if self.transport is not None:
            self.transport.setTcpNoDelay(True)  # type: ignore[attr-defined]  # a TCP transport
        super().connectionMade()

    def onOpen(self) -> None:
        self.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.browser is not None:
            self.browser.from_app(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.opened.called:
            self.opened.errback(ConnectionError("app refused the WebSocket"))
            return
        if self.browser is not None:
            browser, self.browser = self.browser, None
            browser.app = None
            _close(browser, _BAD_GATEWAY if code == _ABNORMAL else code, reason)


class BrowserSide(WebSocketServerProtocol):
    """The browser's connection; ``onConnect`` authorises and dials the app (module doc)."""

    app: AppSide | None = None

    @property
    def bridges(self) -> WsBridges:
        return cast(_BrowserFactory, self.factory).bridges

    def __init__(self) -> None:
        super().__init__()
        self.session_id: str | None = None
        self._backlog: list[tuple[bytes, bool]] | None = []
        self._gone = False
        self._last_touch = 0.0

    def onConnect(self, request: ConnectionRequest) -> Deferred[str | None]:  # type: ignore[override]  # Autobahn awaits a Deferred (txaio.as_future)
        return Deferred.fromCoroutine(self._admit(request))

    async def _admit(self, request: ConnectionRequest) -> str | None:
        target = self.http_request_uri.encode("latin-1")
        path, _, query = target.partition(b"?")
        found = split_session_path(path)
        if found is None:
            raise _deny(ConnectionDeny.NOT_FOUND, "No such session.")
        session_id = found[0]
        refusal = self.bridges.refusal(request, session_id)
        if refusal is not None:
            raise _deny(*refusal)
        route = self.bridges.directory.route(session_id.lower())
        if route is None:
            raise _deny(ConnectionDeny.NOT_FOUND, "No such session.")
        rest = query_without(query, ACCESS_TOKEN)
        app = await self.bridges.dial(route, path + (b"?" + rest if rest else b""), request)
        if self._gone:
            _close(app, GOING_AWAY, None)
            raise _deny(ConnectionDeny.SERVICE_UNAVAILABLE, "Client went away.")
        self.session_id = session_id
        self.app, app.browser = app, self
        self.bridges.track(self)
        chosen: str | None = app.websocket_protocol_in_use
        return chosen

    def onOpen(self) -> None:
        backlog, self._backlog = self._backlog or [], None
        for payload, is_binary in backlog:
            _send(self, payload, is_binary)

    def from_app(self, payload: bytes, is_binary: bool) -> None:
        if self._backlog is not None:  # the app spoke before our handshake answer went out
            self._backlog.append((payload, is_binary))
        else:
            _send(self, payload, is_binary)
        self._touch()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self.app is not None:
            _send(self.app, payload, isBinary)
        self._touch()

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._gone = True
        self.bridges.untrack(self)
        if self.app is not None:
            app, self.app = self.app, None
            app.browser = None
            _close(app, GOING_AWAY if code == _ABNORMAL else code, reason)

    def end(self, reason: str) -> None:
        """Session ended or shutdown: both sides get 1001."""
        if self.app is not None:
            app, self.app = self.app, None
            app.browser = None
            _close(app, GOING_AWAY, reason)
        _close(self, GOING_AWAY, reason)

    def _touch(self) -> None:
        now = self.bridges.clock.seconds()
        if self.session_id is not None and now - self._last_touch >= _TOUCH_EVERY_SECONDS:
            self._last_touch = now
            self.bridges.directory.touch(self.session_id.lower())


class _BrowserFactory(WebSocketServerFactory):
    protocol = BrowserSide
    bridges: WsBridges


def _deny(code: int, reason: str) -> ConnectionDeny:
    return ConnectionDeny(code, reason)


def _send(side: WebSocketServerProtocol | WebSocketClientProtocol, payload: bytes,
          is_binary: bool) -> None:
    side.sendMessage(payload, is_binary)  # type: ignore[no-untyped-call]  # Autobahn leaves this untyped


class WsBridges:
    """The WebSocket half of the session proxy: one Autobahn resource, bridges per session."""

    def __init__(self, *, reactor: IReactorTCP, directory: SessionDirectory, gate: Gate,
                 limits: WsLimits = WsLimits()) -> None:
        self._reactor = reactor
        self.clock = IReactorTime(reactor)
        self.directory = directory
        self._gate = gate
        self._limits = limits
        self._bridges: dict[str, set[BrowserSide]] = {}
        factory = _BrowserFactory(reactor=reactor)  # type: ignore[no-untyped-call]  # Autobahn leaves this untyped
        factory.bridges = self
        factory.setProtocolOptions(  # type: ignore[no-untyped-call]  # Autobahn leaves this untyped
            maxFramePayloadSize=limits.max_frame_bytes,
            maxMessagePayloadSize=limits.max_message_bytes,
            autoPingInterval=limits.auto_ping_interval_seconds,
            autoPingTimeout=limits.auto_ping_timeout_seconds,
            openHandshakeTimeout=limits.handshake_timeout_seconds,
            closeHandshakeTimeout=limits.close_timeout_seconds,
        )
        factory._batched_timer = _ReactorTimer(self.clock)
        self.resource = WebSocketResource(factory)
        directory.on_session_end(self.end_session)

    def render(self, request: Request) -> bytes | int:
        """Hands an upgrade request (already cookie-checked) to Autobahn."""
        result: bytes | int = self.resource.render(request)
        return result

    def refusal(self, request: ConnectionRequest, session_id: str) -> tuple[int, str] | None:
        """Cookie and Origin checks of the handshake; (status, reason) to refuse."""
        headers = Headers()
        cookie = request.headers.get("cookie")
        if cookie:
            headers.setRawHeaders(b"cookie", [cookie.encode("latin-1")])
        found = self._gate.refusal(headers, session_id)
        if found is not None:
            return found
        if request.origin and not _same_host(request.origin, request.host):
            log.debug("refused cross-origin WebSocket for session {session_id}", session_id=session_id)
            return ConnectionDeny.FORBIDDEN, "Cross-origin WebSocket refused."
        return None

    async def dial(self, route: SessionRoute, target: bytes, request: ConnectionRequest) -> AppSide:
        """Opens the app side; refuses the browser with 502 if the app cannot be reached."""
        host = route.host
        url = f"ws://{_netloc(host, route.port)}{target.decode('latin-1')}"
        headers = {"Authorization": route.authorization}
        factory = WebSocketClientFactory(url, protocols=list(request.protocols) or None,
                                         headers=headers, reactor=self._reactor)
        factory.protocol = AppSide
        factory.setProtocolOptions(
            maxFramePayloadSize=self._limits.max_frame_bytes,
            maxMessagePayloadSize=self._limits.max_message_bytes,
            openHandshakeTimeout=self._limits.handshake_timeout_seconds,
            closeHandshakeTimeout=self._limits.close_timeout_seconds,
        )
        factory._batched_timer = _ReactorTimer(self.clock)
        try:
            endpoint = _endpoint(self._reactor, host, route.port, self._limits.connect_timeout_seconds)
            app = cast(AppSide, await endpoint.connect(factory))
            await app.opened
        except Exception as exc:  # CancelledError too: nobody cancels this but the handshake
            log.debug("app WebSocket unreachable: {error}", error=type(exc).__name__)
            raise _deny(502, "The application cannot be reached.") from None
        return app

    def track(self, side: BrowserSide) -> None:
        if side.session_id is not None:
            self._bridges.setdefault(side.session_id.lower(), set()).add(side)

    def untrack(self, side: BrowserSide) -> None:
        if side.session_id is None:
            return
        found = self._bridges.get(side.session_id.lower())
        if found is not None:
            found.discard(side)
            if not found:
                del self._bridges[side.session_id.lower()]

    def end_session(self, session_id: str) -> None:
        """Closes the session's bridges with 1001 (registered with the directory)."""
        for side in list(self._bridges.pop(session_id.lower(), ())):
            side.end("session ended")

    def close(self) -> None:
        """Shutdown: every bridge gets 1001."""
        for session_id in list(self._bridges):
            self.end_session(session_id)

    def open_bridges(self, session_id: str) -> int:
        return len(self._bridges.get(session_id.lower(), ()))


def _same_host(origin: str, host: str | None) -> bool:
    """True if ``Origin``'s host and port equal the request's ``Host`` (default ports filled in)."""
    if not host:
        return False
    try:
        theirs, ours = urlsplit(origin), urlsplit("//" + host)
        if (theirs.hostname or "").lower() != (ours.hostname or "").lower():
            return False
        # Autobahn strips the port from Host once it matched the listening port, so a
        # Host without a port says nothing about it (and cookies ignore ports anyway).
        if ours.port is None:
            return True
        default = 443 if theirs.scheme == "https" else 80
        return (theirs.port or default) == ours.port
    except ValueError:
        return False


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _endpoint(reactor: IReactorTCP, host: str, port: int, timeout: float) -> TCP4ClientEndpoint | HostnameEndpoint:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        return HostnameEndpoint(reactor, host.encode("idna"), port, timeout=timeout)
    return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)


__all__ = ["WsBridges", "WsLimits", "acceleration", "GOING_AWAY"]
