"""WebSocket bridging for session paths: browser <-> SealSkin <-> app.

The session resource hands requests carrying ``Upgrade: websocket`` to Autobahn's
``WebSocketResource``, which takes the connection over. Our server protocol's ``onConnect``:

1. re-checks the session cookie (the resource already did; the session may end meanwhile),
2. refuses an ``Origin`` whose host differs from the request's ``Host`` (cross-site WebSocket
   hijacking, upstream-protocol 10 W9), with 403; a request without ``Origin`` is not from a
   browser page and cannot be a cross-site one,
3. dials ``ws://<app><same path and query>`` with the app's Basic credentials and the browser's
   offered subprotocols, and accepts the browser with the subprotocol the app chose.

Autobahn makes both opening handshakes and nothing else: once the browser's is answered, both
connections are handed to a :class:`~sealskin.proxy.relay.Relay`, which forwards frames
verbatim (fragments, ping/pong, close codes end to end), enforces the size limits and the
header rules, pings idle browsers every ``auto_ping_interval_seconds`` and closes both sides
with 1001 when the session ends. No extension is negotiated on either side (Autobahn offers
and accepts none), so frames mean the same on both connections and RSV bits are refused.
"""

from __future__ import annotations

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
from twisted.internet.interfaces import IDelayedCall, IReactorTCP, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http_headers import Headers
from twisted.web.server import Request

from sealskin.model import SessionRoute
from sealskin.proxy import SessionDirectory
from sealskin.proxy.frames import GOING_AWAY
from sealskin.proxy.transport import Transport, app_endpoint, netloc
from sealskin.proxy.gate import ACCESS_TOKEN, Gate, query_without, split_session_path
from sealskin.proxy.relay import Relay, RelayLimits

log = Logger()


@attrs.frozen
class WsLimits:
    """WebSocket limits; payload sizes in bytes, 0 meaning unlimited (Autobahn's convention).

    ``max_message_bytes`` bounds a message (the sum of its fragments), ``max_frame_bytes``
    one frame; a relayed message or frame beyond either closes both sides with 1009.
    """

    auto_ping_interval_seconds: float = 30.0
    auto_ping_timeout_seconds: float = 30.0
    max_message_bytes: int = 64 * 1024 * 1024
    max_frame_bytes: int = 16 * 1024 * 1024
    connect_timeout_seconds: float = 10.0
    handshake_timeout_seconds: float = 10.0
    close_timeout_seconds: float = 5.0

    @classmethod
    def from_settings(cls, *, ping_seconds: float, ping_timeout_seconds: float,
                      max_message_bytes: int) -> WsLimits:
        """The limits the server's settings name (frames capped at 16 MiB or the message size)."""
        return cls(auto_ping_interval_seconds=ping_seconds,
                   auto_ping_timeout_seconds=ping_timeout_seconds,
                   max_message_bytes=max_message_bytes,
                   max_frame_bytes=min(max_message_bytes, 16 * 1024 * 1024))

    def relay(self) -> RelayLimits:
        return RelayLimits(ping_interval_seconds=self.auto_ping_interval_seconds,
                           ping_timeout_seconds=self.auto_ping_timeout_seconds,
                           max_message_bytes=self.max_message_bytes,
                           max_frame_bytes=self.max_frame_bytes,
                           close_timeout_seconds=self.close_timeout_seconds)


def acceleration() -> dict[str, str]:
    """Which implementation Autobahn uses for UTF-8 validation and masking.

    ``nvx`` (Autobahn's own compiled CFFI code, since autobahn 25), ``wsaccel``, or ``python``.
    Relayed frames use neither: masking serves only the frames the proxy writes itself, and
    the proxy no longer validates UTF-8 (the endpoints do).
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


def _side(protocol: WebSocketServerProtocol | WebSocketClientProtocol) -> Transport:
    return cast(Transport, protocol.transport)  # a TLS or TCP transport


class AppSide(WebSocketClientProtocol):
    """Our connection to the app: Autobahn's client handshake, then the relay's."""

    relay: Relay | None = None

    def __init__(self) -> None:
        super().__init__()
        self.opened: Deferred[None] = Deferred()
        self.early = b""  # what the app sent after its handshake, before the relay started
        self.gone = False

    def connectionMade(self) -> None:
        # Frames are relayed as they come: Nagle would hold small ones for the app's ACK.
        if self.transport is not None:
            self.transport.setTcpNoDelay(True)  # type: ignore[attr-defined]  # a TCP transport
        super().connectionMade()

    def onOpen(self) -> None:
        # Autobahn's part ends here. Reading pauses until the browser is answered (the relay
        # resumes it), so the app's first frames wait in the kernel, not in this process.
        self.early, self.data = self.data, b""
        _side(self).pauseProducing()
        self.opened.callback(None)

    def dataReceived(self, data: bytes) -> None:
        if self.relay is not None:
            self.relay.from_app(data)
        elif self.opened.called:
            self.early += data
        else:
            super().dataReceived(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.gone = True
        if self.relay is not None:
            self.relay.app_lost()
        super().connectionLost(reason)  # type: ignore[arg-type]  # Autobahn's default is a Failure

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.opened.called:
            self.opened.errback(ConnectionError("app refused the WebSocket"))


class BrowserSide(WebSocketServerProtocol):
    """The browser's connection; ``onConnect`` authorises and dials the app (module doc)."""

    app: AppSide | None = None
    relay: Relay | None = None

    @property
    def bridges(self) -> WsBridges:
        return cast(_BrowserFactory, self.factory).bridges

    def __init__(self) -> None:
        super().__init__()
        self.session_id: str | None = None
        self._admitting = False
        self._early = b""  # sent while onConnect was dialling (a client must not, RFC 6455 4.1)
        self._gone = False

    def onConnect(self, request: ConnectionRequest) -> Deferred[str | None]:  # type: ignore[override]  # Autobahn awaits a Deferred (txaio.as_future)
        self._admitting = True
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
        if self._gone or app.gone or self.bridges.directory.route(session_id.lower()) is None:
            _side(app).abortConnection()
            raise _deny(ConnectionDeny.SERVICE_UNAVAILABLE, "Client or session went away.")
        self.session_id, self.app = session_id, app
        chosen: str | None = app.websocket_protocol_in_use
        return chosen

    def onOpen(self) -> None:
        app = self.app
        assert app is not None and self.session_id is not None
        early, self.data, self._early = self.data + self._early, b"", b""
        self._admitting = False
        relay = self.bridges.join(self.session_id, _side(self), _side(app))
        self.relay = app.relay = relay
        relay.start(from_browser=early, from_app=app.early)
        app.early = b""

    def dataReceived(self, data: bytes) -> None:
        if self.relay is not None:
            self.relay.from_browser(data)
        elif self._admitting:
            self._early += data
        else:
            super().dataReceived(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._gone = True
        if self.relay is not None:
            self.relay.browser_lost()
        super().connectionLost(reason)  # type: ignore[arg-type]  # Autobahn's default is a Failure

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self._gone = True
        if self.relay is None and self.app is not None:
            _side(self.app).abortConnection()  # the handshake failed after the app answered


class _BrowserFactory(WebSocketServerFactory):
    protocol = BrowserSide
    bridges: WsBridges


def _deny(code: int, reason: str) -> ConnectionDeny:
    return ConnectionDeny(code, reason)


class WsBridges:
    """The WebSocket half of the session proxy: one Autobahn resource, bridges per session."""

    def __init__(self, *, reactor: IReactorTCP, directory: SessionDirectory, gate: Gate,
                 limits: WsLimits = WsLimits()) -> None:
        self._reactor = reactor
        self.clock = IReactorTime(reactor)
        self.directory = directory
        self._gate = gate
        self._limits = limits
        self._relays: dict[str, set[Relay]] = {}
        factory = _BrowserFactory(reactor=reactor)  # type: ignore[no-untyped-call]  # Autobahn leaves this untyped
        factory.bridges = self
        factory.setProtocolOptions(  # type: ignore[no-untyped-call]  # Autobahn leaves this untyped
            autoPingInterval=0,  # the relay pings, at frame boundaries
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
        if request.origin and not same_host(request.origin, request.host):
            log.debug("refused cross-origin WebSocket for session {session_id}", session_id=session_id)
            return ConnectionDeny.FORBIDDEN, "Cross-origin WebSocket refused."
        return None

    async def dial(self, route: SessionRoute, target: bytes, request: ConnectionRequest) -> AppSide:
        """Opens the app side; refuses the browser with 502 if the app cannot be reached."""
        host = route.host
        url = f"ws://{netloc(host, route.port)}{target.decode('latin-1')}"
        headers = {"Authorization": route.authorization}
        factory = WebSocketClientFactory(url, protocols=list(request.protocols) or None,
                                         headers=headers, reactor=self._reactor)
        factory.protocol = AppSide
        factory.setProtocolOptions(
            openHandshakeTimeout=self._limits.handshake_timeout_seconds,
            closeHandshakeTimeout=self._limits.close_timeout_seconds,
        )
        factory._batched_timer = _ReactorTimer(self.clock)
        try:
            endpoint = app_endpoint(self._reactor, host, route.port, self._limits.connect_timeout_seconds)
            app = cast(AppSide, await endpoint.connect(factory))
            await app.opened
        except Exception as exc:  # CancelledError too: nobody cancels this but the handshake
            log.debug("app WebSocket unreachable: {error}", error=type(exc).__name__)
            raise _deny(502, "The application cannot be reached.") from None
        return app

    def join(self, session_id: str, browser: Transport, app: Transport) -> Relay:
        """A relay between both open connections, tracked until both are gone."""
        key = session_id.lower()
        relay = Relay(browser=browser, app=app, clock=self.clock, limits=self._limits.relay(),
                      touch=lambda: self.directory.touch(key),
                      done=lambda finished: self._untrack(key, finished))
        self._relays.setdefault(key, set()).add(relay)
        return relay

    def _untrack(self, key: str, relay: Relay) -> None:
        found = self._relays.get(key)
        if found is not None:
            found.discard(relay)
            if not found:
                del self._relays[key]

    def end_session(self, session_id: str) -> None:
        """Closes the session's bridges with 1001 (registered with the directory).

        They count as gone at once; their closing handshakes finish within the close timeout.
        """
        for relay in self._relays.pop(session_id.lower(), ()):
            relay.end("session ended")

    def close(self) -> None:
        """Shutdown: every bridge gets 1001."""
        for session_id in list(self._relays):
            self.end_session(session_id)

    def open_bridges(self, session_id: str) -> int:
        """Bridges of the session not ended and with a connection still open."""
        return len(self._relays.get(session_id.lower(), ()))


def same_host(origin: str, host: str | None) -> bool:
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


__all__ = ["WsBridges", "WsLimits", "acceleration", "same_host", "GOING_AWAY"]
