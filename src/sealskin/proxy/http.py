"""Streaming HTTP reverse proxy for session paths (what ``ReverseProxyResource`` lacks).

Twisted's ``ReverseProxyResource`` reads request bodies whole, forces ``Connection: close``
upstream and writes responses without backpressure (upstream-protocol 10 P2, P5). Here:

* **Uploads stream.** ``HTTPChannel`` hands body bytes to ``Request.handleContentChunk`` and
  only calls ``render`` once the whole body has arrived (in a temp file). :class:`StreamingRequest`
  therefore asks the site, as soon as the headers are in (``gotLength``), whether a body
  belongs to an admitted session; if so the upstream request starts right away and each chunk
  goes straight to the upstream connection through :class:`UploadStream`, an ``IBodyProducer``.
  When the upstream socket's buffer fills, the transport pauses that producer and we pause
  reading from the client socket (TCP backpressure); on resume we read again. At most one
  socket read (tens of KiB) is held while paused.
* **Downloads stream.** The upstream connection's transport is registered as a streaming
  producer on the client ``Request``; when the client socket's buffer fills, Twisted pauses it,
  so we stop reading from the upstream socket.
* **Keep-alive.** :class:`~sealskin.proxy.upstream.UpstreamPool` keeps idle connections per
  app (at most ``max_idle_per_upstream`` per ``host:port``); request heads are written as one
  ``bytes`` and answers parsed by :mod:`sealskin.proxy.http1` (``Agent`` cost a third of the
  proxy's CPU per small request).
* **Headers.** Hop-by-hop headers (and those named in ``Connection``) are dropped both ways,
  client-sent ``X-Forwarded-*``/``Forwarded``/``X-Real-IP`` are dropped and ours are set, the app's
  Basic credentials replace any ``Authorization`` and SealSkin cookies never reach the app
  (upstream-protocol 7.6, 10 W11).

The response cannot start before Twisted has parsed the whole request (``Request.write``
needs the method and protocol version), so an early upstream answer to a streamed upload waits
for the end of the upload.
"""

from __future__ import annotations

import io
from typing import Protocol as TypingProtocol

import attrs
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.logger import Logger
from twisted.web import server

from sealskin.httpbody import LimitedRequest
from sealskin.model import SessionRoute
from sealskin.proxy import SessionDirectory
from sealskin.proxy.gate import Gate
from sealskin.proxy.exchange import Exchange, UploadStream, connection_tokens, is_hop
from sealskin.proxy.transport import netloc
from sealskin.proxy.upstream import UpstreamPool

log = Logger()
_REPLACED = frozenset({
    b"host", b"content-length", b"authorization", b"expect", b"forwarded", b"x-real-ip",
})


@attrs.frozen
class HttpLimits:
    """Timeouts and pool sizes of the HTTP proxy.

    ``response_timeout_seconds`` runs from the moment the request (body included) has been sent
    upstream until the response headers arrive; then 504. A connect failure gives 502.
    """

    connect_timeout_seconds: float = 10.0
    response_timeout_seconds: float = 120.0
    max_idle_per_upstream: int = 64
    idle_connection_seconds: float = 120.0


class BodySink(TypingProtocol):
    """Where :class:`StreamingRequest` sends a body it does not buffer."""

    def data_received(self, data: bytes) -> None: ...

    def body_complete(self) -> bool:
        """Called when the whole body arrived; True if the sink also answers the request."""
        ...


class EarlyBodyRouter(TypingProtocol):
    """Decides, from the request head alone, whether a body streams (see the module doc)."""

    def early_body(self, request: StreamingRequest, method: bytes, uri: bytes,
                   length: int | None) -> BodySink | None: ...


class DiscardBody:
    """Drops the body of a request that will be refused anyway (no cookie, unknown session).

    The request is then routed normally and answered 401/403/404 with an empty body, so an
    unauthenticated client can never make us store an upload.
    """

    def data_received(self, data: bytes) -> None:
        pass

    def body_complete(self) -> bool:
        return False


class StreamingRequest(LimitedRequest):
    """A ``Request`` that can hand its body to a :class:`BodySink` instead of a temp file.

    Bodies that are not streamed to a session (``/api``) keep the size limits of
    :class:`~sealskin.httpbody.LimitedRequest`.

    The site (``channel.site``) must provide :class:`EarlyBodyRouter` as ``early_body_router``.
    Method and target are not yet on the request when ``gotLength`` runs, so they are read from
    the channel's parser state (``_command``/``_path``); if a future Twisted renames them, bodies
    are buffered as before (the streaming tests then fail, nothing else breaks).
    """

    _sink: BodySink | None = None

    def __init__(self, channel: object, queued: object = None) -> None:
        super().__init__(channel, queued)  # type: ignore[no-untyped-call]  # Twisted leaves this untyped
        _no_delay(channel)

    def gotLength(self, length: int | None) -> None:
        router: EarlyBodyRouter | None = getattr(getattr(self.channel, "site", None), "early_body_router", None)
        method = getattr(self.channel, "_command", None)
        uri = getattr(self.channel, "_path", None)
        if (router is not None and (length is None or length > 0)
                and isinstance(method, bytes) and isinstance(uri, bytes)):
            self._sink = router.early_body(self, method, uri, length)
            if self._sink is not None:
                self.content = io.BytesIO()
                return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._sink is not None:
            self._sink.data_received(data)
        else:
            super().handleContentChunk(data)

    def process(self) -> None:
        if self._sink is None:
            super().process()  # type: ignore[no-untyped-call]  # Twisted leaves this untyped
            return
        # What Site's Request.process does before it renders; the sink may answer (and finish)
        # synchronously inside body_complete.
        self.site = self.channel.site  # type: ignore[attr-defined]  # set by Site.buildProtocol
        self.prepath = []
        self.postpath = []
        if not self._sink.body_complete():
            super().process()  # type: ignore[no-untyped-call]  # Twisted leaves this untyped


def _no_delay(channel: object) -> None:
    """Turns Nagle's algorithm off on a client connection, once per connection.

    A proxied response often leaves in two writes from two reactor turns (head and body, then
    the end of the body); with Nagle on, the second waits for the client's delayed ACK (up to
    40 ms on Linux) while the client waits for the whole response. A TLS transport passes the
    call on to its TCP transport.
    """
    if getattr(channel, "_sealskin_no_delay", False):
        return
    setattr(channel, "_sealskin_no_delay", True)
    set_no_delay = getattr(getattr(channel, "transport", None), "setTcpNoDelay", None)
    if set_no_delay is not None:
        try:
            set_no_delay(True)
        except OSError:  # a closing socket
            pass


class HttpForwarder:
    """Proxies HTTP requests of admitted sessions and tracks them per session.

    ``reactor`` must provide ``IReactorTCP`` and ``IReactorTime``. Call :meth:`close` at
    shutdown: it aborts in-flight exchanges and closes pooled connections.
    """

    def __init__(self, *, reactor: IReactorTCP, directory: SessionDirectory, gate: Gate,
                 limits: HttpLimits = HttpLimits()) -> None:
        self.clock = IReactorTime(reactor)
        self.directory = directory
        self.gate = gate
        self.limits = limits
        self.pool = UpstreamPool(reactor, max_idle_per_upstream=limits.max_idle_per_upstream,
                                 idle_seconds=limits.idle_connection_seconds,
                                 connect_timeout_seconds=limits.connect_timeout_seconds)
        self._in_flight: dict[str, set[Exchange]] = {}
        self.streamed_uploads = 0  # requests whose body went upstream while still arriving
        directory.on_session_end(self.end_session)

    def stream(self, request: StreamingRequest, session_id: str, route: SessionRoute,
               method: bytes, uri: bytes, length: int | None) -> UploadStream:
        """Starts an exchange whose body is still arriving (from ``gotLength``)."""
        upload = UploadStream(request, length)
        self.streamed_uploads += 1
        exchange = Exchange(self, request, session_id, route, method, uri, upload)
        upload.exchange = exchange
        exchange.start()
        return upload

    def render(self, request: server.Request, session_id: str, route: SessionRoute) -> int:
        """Proxies a request whose (small or empty) body was buffered by Twisted."""
        body = request.content.read() if request.content is not None else b""
        assert request.method is not None and request.uri is not None
        exchange = Exchange(self, request, session_id, route, request.method, request.uri, body)
        exchange.request_ready()
        exchange.start()
        return server.NOT_DONE_YET

    def end_session(self, session_id: str) -> None:
        """Aborts the session's in-flight exchanges (registered with the directory)."""
        for exchange in list(self._in_flight.pop(session_id, ())):
            exchange.abort()

    async def close(self) -> None:
        """Aborts every in-flight exchange and closes pooled upstream connections."""
        for session_id in list(self._in_flight):
            self.end_session(session_id)
        await self.pool.close()

    def in_flight(self, session_id: str) -> int:
        return len(self._in_flight.get(session_id, ()))

    def track(self, exchange: Exchange) -> None:
        self._in_flight.setdefault(exchange.session_id, set()).add(exchange)

    def untrack(self, exchange: Exchange) -> None:
        found = self._in_flight.get(exchange.session_id)
        if found is not None:
            found.discard(exchange)
            if not found:
                del self._in_flight[exchange.session_id]

    def request_head(self, request: server.Request, route: SessionRoute, method: bytes,
                     target: bytes, body: bytes | UploadStream) -> bytes:
        """The upstream request head (module doc, "Headers"), ending with its blank line."""
        lines = [b"%s %s HTTP/1.1\r\nHost: %s\r\n" % (method, target, netloc(route.host, route.port).encode("ascii"))]
        headers = request.requestHeaders
        named = connection_tokens(headers)
        for name, values in headers.getAllRawHeaders():
            low = name.lower()
            if is_hop(low, named) or low in _REPLACED or low.startswith(b"x-forwarded-"):
                continue
            if low == b"cookie":
                values = self.gate.app_cookies(list(values))
            lines.extend(b"%s: %s\r\n" % (name, value) for value in values)
        lines.append(b"Authorization: %s\r\n" % route.authorization.encode("latin-1"))
        client_ip = getattr(request.getClientAddress(), "host", None)
        if isinstance(client_ip, str):
            lines.append(b"X-Forwarded-For: %s\r\n" % client_ip.encode("ascii"))
        lines.append(b"X-Forwarded-Proto: https\r\n")
        host = headers.getRawHeaders(b"host")
        if host:
            lines.append(b"X-Forwarded-Host: %s\r\n" % host[0])
        if isinstance(body, bytes):
            if body or method in _BODY_METHODS:
                lines.append(b"Content-Length: %d\r\n" % len(body))
        elif body.known_length is not None:
            lines.append(b"Content-Length: %d\r\n" % body.known_length)
        else:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)


_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})
