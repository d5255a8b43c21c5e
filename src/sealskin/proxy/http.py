"""Streaming HTTP reverse proxy for session paths (what ``ReverseProxyResource`` lacks).

Twisted's ``ReverseProxyResource`` reads request bodies whole, forces ``Connection: close``
upstream and writes responses without backpressure (upstream-protocol 10 P2, P5). Here:

* **Uploads stream.** ``HTTPChannel`` hands body bytes to ``Request.handleContentChunk`` and
  only calls ``render`` once the whole body has arrived (in a temp file). :class:`StreamingRequest`
  therefore asks the site, as soon as the headers are in (``gotLength``), whether a body
  belongs to an admitted session; if so the upstream request starts right away and each chunk
  goes straight to the upstream connection through :class:`UploadStream`, an ``IBodyProducer``.
  When the upstream socket's buffer fills, Agent pauses that producer and we pause reading
  from the client socket (TCP backpressure); on resume we read again. At most one socket read
  (tens of KiB) is held while paused.
* **Downloads stream.** The upstream response's transport is registered as a streaming
  producer on the client ``Request``; when the client socket's buffer fills, Twisted pauses it,
  so we stop reading from the upstream socket.
* **Keep-alive.** One :class:`twisted.web.client.Agent` with a persistent
  ``HTTPConnectionPool`` per proxy: idle connections are reused, at most
  ``max_idle_per_upstream`` are kept per ``host:port``.
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
import ipaddress
from collections.abc import Callable
from typing import Protocol as TypingProtocol

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, HostnameEndpoint
from twisted.internet.interfaces import (
    IConsumer,
    IDelayedCall,
    IPushProducer,
    IReactorTCP,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.client import URI, Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IAgentEndpointFactory, IBodyProducer, IResponse
from zope.interface import implementer

from sealskin.httpbody import BytesBody, LimitedRequest
from sealskin.model import SessionRoute
from sealskin.proxy import SessionDirectory
from sealskin.proxy.gate import ACCESS_TOKEN, Gate, json_error, query_without

log = Logger()

_HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"te", b"trailer", b"trailers", b"transfer-encoding",
    b"upgrade", b"proxy-connection", b"proxy-authenticate", b"proxy-authorization",
})
# Client copies that we drop because we set or compute them ourselves.
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


def _pause_reading(request: server.Request) -> None:
    producer = IPushProducer(request.channel.transport, None)
    if producer is not None:
        producer.pauseProducing()


def _resume_reading(request: server.Request) -> None:
    producer = IPushProducer(request.channel.transport, None)
    if producer is not None:
        producer.resumeProducing()


@implementer(IBodyProducer)
class UploadStream:
    """Feeds a client request body to the upstream connection, pausing the client as needed.

    Bytes that arrive before Agent starts us (while connecting) or while the upstream is paused
    are kept in ``_pending`` and the client is paused; TCP then stops the sender, so ``_pending``
    holds at most a few socket reads.
    """

    def __init__(self, request: server.Request, length: int | None) -> None:
        self.length: int | object = UNKNOWN_LENGTH if length is None else length
        self._request = request
        self._consumer: IConsumer | None = None
        self._pending: list[bytes] = []
        self._paused = False
        self._complete = False
        self._stopped = False
        self._done: Deferred[None] | None = None
        self.sent: Deferred[None] = Deferred()
        self.exchange: Exchange | None = None

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        self._consumer = consumer
        self._done = Deferred()
        self._flush()
        return self._done

    def pauseProducing(self) -> None:
        self._paused = True
        _pause_reading(self._request)

    def resumeProducing(self) -> None:
        self._paused = False
        self._flush()

    def stopProducing(self) -> None:
        # IBodyProducer: the startProducing Deferred must never fire after this.
        self._stopped = True
        self._pending.clear()
        if not self._complete:
            _resume_reading(self._request)  # drain (and discard) the rest of the body

    def data_received(self, data: bytes) -> None:
        if self._stopped:
            return
        if self._consumer is None or self._paused or self._pending:
            self._pending.append(data)
            _pause_reading(self._request)
            return
        self._consumer.write(data)

    def body_complete(self) -> bool:
        self._complete = True
        self._flush()
        if self.exchange is not None:
            self.exchange.request_ready()
        return True

    def _flush(self) -> None:
        if self._stopped or self._consumer is None:
            return
        while self._pending and not self._paused:
            self._consumer.write(self._pending.pop(0))
        if self._paused:
            return
        if self._complete and not self._pending and self._done is not None:
            done, self._done = self._done, None
            done.callback(None)
            self.sent.callback(None)
        elif not self._complete:
            _resume_reading(self._request)


@implementer(IAgentEndpointFactory)
class _DirectEndpoints:
    """Dials upstream IP literals directly (no resolver thread); names go through the resolver."""

    def __init__(self, reactor: IReactorTCP, connect_timeout_seconds: float) -> None:
        self._reactor = reactor
        self._timeout = connect_timeout_seconds

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        host = uri.host.decode("ascii")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return HostnameEndpoint(self._reactor, uri.host, uri.port, timeout=self._timeout)
        if address.version == 6:
            return TCP6ClientEndpoint(self._reactor, host, uri.port, timeout=self._timeout)
        return TCP4ClientEndpoint(self._reactor, host, uri.port, timeout=self._timeout)


class HttpForwarder:
    """Proxies HTTP requests of admitted sessions and tracks them per session.

    ``reactor`` must provide ``IReactorTCP`` and ``IReactorTime``. Call :meth:`close` at
    shutdown: it aborts in-flight exchanges and closes pooled connections.
    """

    def __init__(self, *, reactor: IReactorTCP, directory: SessionDirectory, gate: Gate,
                 limits: HttpLimits = HttpLimits()) -> None:
        self._reactor = IReactorTime(reactor)
        self._directory = directory
        self._gate = gate
        self.limits = limits
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = limits.max_idle_per_upstream
        self._pool.cachedConnectionTimeout = limits.idle_connection_seconds  # type: ignore[assignment]  # seconds, float is fine
        self._agent = Agent.usingEndpointFactory(
            reactor, _DirectEndpoints(reactor, limits.connect_timeout_seconds), pool=self._pool)
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
        upload: BytesBody | None = None
        if body:
            upload = BytesBody(body)
        assert request.method is not None and request.uri is not None
        exchange = Exchange(self, request, session_id, route, request.method, request.uri, upload)
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
        await self._pool.closeCachedConnections()

    def in_flight(self, session_id: str) -> int:
        return len(self._in_flight.get(session_id, ()))

    def _track(self, exchange: Exchange) -> None:
        self._in_flight.setdefault(exchange.session_id, set()).add(exchange)

    def _untrack(self, exchange: Exchange) -> None:
        found = self._in_flight.get(exchange.session_id)
        if found is not None:
            found.discard(exchange)
            if not found:
                del self._in_flight[exchange.session_id]

    def _upstream_headers(self, request: server.Request, route: SessionRoute) -> Headers:
        out = Headers()
        named = _connection_tokens(request.requestHeaders)
        for name, values in request.requestHeaders.getAllRawHeaders():
            low = name.lower()
            if _is_hop(low, named) or low in _REPLACED or low.startswith(b"x-forwarded-"):
                continue
            out.setRawHeaders(name, list(values))
        self._gate.strip_cookies(out)
        out.setRawHeaders(b"authorization", [route.authorization.encode("latin-1")])
        peer = request.getClientAddress()
        client_ip = getattr(peer, "host", None)
        if isinstance(client_ip, str):
            out.setRawHeaders(b"x-forwarded-for", [client_ip.encode("ascii")])
        out.setRawHeaders(b"x-forwarded-proto", [b"https"])
        host = request.requestHeaders.getRawHeaders(b"host")
        if host:
            out.setRawHeaders(b"x-forwarded-host", [host[0]])
        return out


def _connection_tokens(headers: Headers) -> frozenset[bytes]:
    return frozenset(token.strip().lower()
                     for line in headers.getRawHeaders(b"connection", [])
                     for token in line.split(b","))


def _is_hop(low_name: bytes, named: frozenset[bytes]) -> bool:
    return low_name in _HOP_BY_HOP or low_name.startswith(b"proxy-") or low_name in named


def _copy_response_headers(upstream: Headers, into: Headers) -> None:
    named = _connection_tokens(upstream)
    for name, values in upstream.getAllRawHeaders():
        if not _is_hop(name.lower(), named):
            into.setRawHeaders(name, list(values))


class Exchange:
    """One proxied request: dial, send, relay the answer; abortable at any point."""

    def __init__(self, forwarder: HttpForwarder, request: server.Request, session_id: str,
                 route: SessionRoute, method: bytes, uri: bytes,
                 body: UploadStream | BytesBody | None) -> None:
        self._forwarder = forwarder
        self.request = request
        self.session_id = session_id
        self._route = route
        self._method = method
        self._uri = uri
        self._body = body
        self._ready: Deferred[None] = Deferred()
        self._pending: Deferred[IResponse] | None = None
        self._timer: IDelayedCall | None = None
        self._timed_out = False
        self._aborted = False
        self._client_gone = False
        self._relay: _Relay | None = None

    def start(self) -> None:
        self._forwarder._track(self)
        _ = self.request.notifyFinish().addErrback(self._client_lost)
        self._forwarder._directory.touch(self.session_id)
        _ = Deferred.fromCoroutine(self._run()).addErrback(self._crashed)

    def request_ready(self) -> None:
        """The client request has been parsed completely: the response may be written."""
        if not self._ready.called:
            self._ready.callback(None)

    def abort(self) -> None:
        """Session ended or shutdown: cancel the upstream request or cut both connections."""
        self._aborted = True
        if self._pending is not None:
            self._pending.cancel()
        if self._relay is not None:
            self._relay.stop()
            _abort_client(self.request)

    def _client_lost(self, reason: Failure) -> None:
        self._client_gone = True
        if self._body is not None:
            self._body.stopProducing()
        if self._pending is not None:
            self._pending.cancel()
        if self._relay is not None:
            self._relay.stop()
        self._ready.cancel()

    def _upstream_url(self) -> bytes:
        path, sep, query = self._uri.partition(b"?")
        query = query_without(query, ACCESS_TOKEN) if sep else b""
        host = self._route.host.encode("ascii")
        if b":" in host:
            host = b"[" + host + b"]"
        return b"http://%s:%d%s%s" % (host, self._route.port, path, b"?" + query if query else b"")

    async def _run(self) -> None:
        response = await self._send()
        if response is None:
            return
        try:
            await self._ready
        except CancelledError:
            pass
        if self._aborted or self._client_gone:
            response.deliverBody(_Discard())
            self._done()
            return
        self._begin_response(response)

    async def _send(self) -> IResponse | None:
        headers = self._forwarder._upstream_headers(self.request, self._route)
        try:
            self._pending = self._forwarder._agent.request(
                self._method, self._upstream_url(), headers, self._body)
        except ValueError:
            await self._answer_error(400, "Invalid request target.")
            return None
        if isinstance(self._body, UploadStream):
            _ = self._body.sent.addCallback(lambda _: self._arm_timer())
        else:
            self._arm_timer()
        try:
            return await self._pending
        except Exception:  # CancelledError included: we are the only canceller
            if isinstance(self._body, UploadStream):
                self._body.stopProducing()  # drain the rest of the upload so we can answer
            await self._answer_error(*self._failure_answer())
            return None
        finally:
            self._pending = None
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _failure_answer(self) -> tuple[int, str]:
        if self._timed_out:
            return 504, "The application did not answer in time."
        if self._aborted:
            return 503, "The session has ended."
        if not self._client_gone:
            log.debug("upstream of session {session_id} unreachable", session_id=self.session_id)
        return 502, "The application cannot be reached."

    def _arm_timer(self) -> None:
        if self._pending is None or self._client_gone:
            return
        self._timer = self._forwarder._reactor.callLater(
            self._forwarder.limits.response_timeout_seconds, self._time_out)

    def _time_out(self) -> None:
        self._timer = None
        self._timed_out = True
        if self._pending is not None:
            self._pending.cancel()

    async def _answer_error(self, status: int, detail: str) -> None:
        try:
            await self._ready
        except CancelledError:
            pass
        if self._client_gone or self.request.finished:
            self._done()
            return
        if self.request.startedWriting:
            _abort_client(self.request)
        else:
            self.request.write(json_error(self.request, status, detail))
            self.request.finish()
        self._done()

    def _begin_response(self, response: IResponse) -> None:
        request = self.request
        request.defaultContentType = None
        request.setResponseCode(response.code, response.phrase)
        _copy_response_headers(response.headers, request.responseHeaders)
        self._relay = _Relay(self)
        response.deliverBody(self._relay)

    def relay_finished(self, reason: Failure) -> None:
        self._relay = None
        if self._client_gone:
            self._done()
            return
        if reason.check(ResponseDone, PotentialDataLoss) and not self._aborted:
            self.request.finish()
        else:
            log.debug("upstream response of session {session_id} cut", session_id=self.session_id)
            _abort_client(self.request)
        self._done()

    def _done(self) -> None:
        self._forwarder._untrack(self)
        self._forwarder._directory.touch(self.session_id)

    def _crashed(self, failure: Failure) -> None:
        log.failure("proxy exchange crashed", failure)
        _abort_client(self.request)
        self._done()


def _abort_client(request: server.Request) -> None:
    transport = request.channel.transport if request.channel is not None else None
    abort: Callable[[], None] | None = getattr(transport, "abortConnection", None)
    if abort is not None:
        abort()


_RESPONSE_DONE = Failure(ResponseDone())


class _Relay(Protocol):
    """Writes the upstream body to the client; the upstream transport is the client's producer."""

    def __init__(self, exchange: Exchange) -> None:
        self._exchange = exchange
        self._registered = False

    def connectionMade(self) -> None:
        assert self.transport is not None
        self._exchange.request.registerProducer(self.transport, True)
        self._registered = True

    def dataReceived(self, data: bytes) -> None:
        self._exchange.request.write(data)

    def connectionLost(self, reason: Failure = _RESPONSE_DONE) -> None:
        if self._registered:
            self._registered = False
            request = self._exchange.request
            if not request.finished and request.channel is not None:  # None once the client left
                request.unregisterProducer()
        self._exchange.relay_finished(reason)

    def stop(self) -> None:
        if self.transport is not None:
            IPushProducer(self.transport).stopProducing()


class _Discard(Protocol):
    """Takes an upstream body nobody will read and closes that upstream connection."""

    def connectionMade(self) -> None:
        if self.transport is not None:
            IPushProducer(self.transport).stopProducing()

    def dataReceived(self, data: bytes) -> None:
        pass
