"""Keep-alive HTTP/1.1 connections from the proxy to the apps (what ``Agent`` did, leaner).

Twisted's ``Agent`` spent about a third of the proxy's CPU per small request (URI parsing,
``Headers`` objects, its line-based parser, Deferred chains, pool bookkeeping). Here a request
head is written as one ``bytes``, the answer is parsed by :mod:`sealskin.proxy.http1` and
handed to an :class:`UpstreamHandler` as plain callbacks.

A connection goes back to its pool only when the request was sent whole, the response ended
at its framing and the app allowed reuse; at most ``max_idle_per_upstream`` idle connections
are kept per ``host:port``, each for ``idle_seconds``. An idle connection the app closed is
dropped from the pool when its close arrives; a request that meets one that closed in the
meantime (no byte of answer) is reported ``retryable`` and the caller may send it again on a
fresh connection if its body can be replayed.
"""

from __future__ import annotations

from typing import Protocol as TypingProtocol, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IConsumer, IDelayedCall, IProducer, IReactorTCP, IReactorTime
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from sealskin.proxy.http1 import ResponseParser, UpstreamProtocolError
from sealskin.proxy.transport import Transport, app_endpoint

__all__ = ["StreamedBody", "UpstreamConnection", "UpstreamHandler", "UpstreamPool"]

log = Logger()

_Key = tuple[str, int]


class StreamedBody(TypingProtocol):
    """A request body still arriving: an ``IBodyProducer`` (length ``None`` if unknown)."""

    @property
    def known_length(self) -> int | None: ...

    def startProducing(self, consumer: IConsumer) -> Deferred[None]: ...

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...

    def stopProducing(self) -> None: ...


class UpstreamHandler(TypingProtocol):
    """What a request's owner hears: the response as it arrives, or why there is none."""

    def request_sent(self) -> None: ...

    def head(self, code: int, phrase: bytes, headers: list[tuple[bytes, bytes]]) -> None: ...

    def data(self, chunk: bytes) -> None: ...

    def end(self) -> None: ...

    def failed(self, *, retryable: bool) -> None:
        """No complete answer: the connection was lost or the answer was malformed.

        ``retryable``: a reused connection closed before any byte of answer arrived.
        """
        ...


@implementer(IConsumer)
class _ChunkedWriter:
    """Writes a body of unknown length with the chunked transfer coding."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self._transport.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._transport.unregisterProducer()

    def write(self, data: bytes) -> None:
        if data:
            self._transport.write(b"%x\r\n%s\r\n" % (len(data), data))


class UpstreamConnection(Protocol):
    """One connection to an app, carrying one request at a time."""

    def __init__(self, pool: UpstreamPool, key: _Key) -> None:
        self._pool = pool
        self.key = key
        self.reused = False
        self.lost = False
        self.closed: Deferred[None] = Deferred()
        self.idle_call: IDelayedCall | None = None
        self._handler: UpstreamHandler | None = None
        self._parser: ResponseParser | None = None
        self._body: StreamedBody | None = None
        self._body_done = True
        self.tcp: Transport | None = None

    def connectionMade(self) -> None:
        self.tcp = cast(Transport, self.transport)
        self.tcp.setTcpNoDelay(True)  # request heads leave in one write; never wait for an ACK

    def send(self, head: bytes, body: bytes | StreamedBody | None, handler: UpstreamHandler, *,
             head_request: bool) -> None:
        """Sends one request; ``head`` ends with its blank line and names the body's framing."""
        assert self.tcp is not None and self._handler is None
        self._handler = handler
        self._parser = ResponseParser(self, head_request=head_request)
        if body is None or isinstance(body, bytes):
            self.tcp.write(head + body if body else head)
            handler.request_sent()
            return
        self._body, self._body_done = body, False
        self.tcp.write(head)
        consumer: Transport | _ChunkedWriter = self.tcp
        if body.known_length is None:
            consumer = _ChunkedWriter(self.tcp)
        consumer.registerProducer(cast(IProducer, body), True)
        _ = body.startProducing(cast(IConsumer, consumer)).addCallbacks(self._body_sent, self._body_failed)

    def abort(self) -> None:
        """The owner gives up on this request: nothing more is reported, the connection dies."""
        self._handler = None
        if self.tcp is not None:
            self.tcp.abortConnection()

    def _body_sent(self, _: object) -> None:
        assert self.tcp is not None
        self.tcp.unregisterProducer()
        if self._body is not None and self._body.known_length is None:
            self.tcp.write(b"0\r\n\r\n")
        self._body, self._body_done = None, True
        if self._handler is not None:
            self._handler.request_sent()
        self._maybe_release()

    def _body_failed(self, failure: Failure) -> None:
        self._body = None
        log.debug("request body to {key} failed: {error}", key=self.key, error=failure.value)
        self._fail(retryable=False)

    def dataReceived(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:  # an idle connection must be silent
            self._drop()
            return
        try:
            parser.feed(data)
        except UpstreamProtocolError as exc:
            log.debug("bad answer from {key}: {error}", key=self.key, error=str(exc))
            self._fail(retryable=False)

    # the parser's sink -----------------------------------------------------------------

    def head(self, code: int, phrase: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        if self._handler is not None:
            self._handler.head(code, phrase, headers)

    def data(self, chunk: bytes) -> None:
        if self._handler is not None:
            self._handler.data(chunk)

    def end(self) -> None:
        handler, self._handler = self._handler, None
        if handler is not None:
            handler.end()
        if not self._body_done:  # the app answered before the upload ended: stop sending
            self._stop_body()
            self._drop()
            return
        self._maybe_release()

    # ------------------------------------------------------------------------------------

    def _maybe_release(self) -> None:
        parser = self._parser
        if parser is None or not parser.done or not self._body_done or self.lost:
            return
        self._parser = None
        if parser.keep_alive and not parser.leftover:
            self._pool.release(self)
        else:
            self._drop()

    def _fail(self, *, retryable: bool) -> None:
        handler, self._handler = self._handler, None
        self._stop_body()
        self._drop(abort=True)
        if handler is not None:
            handler.failed(retryable=retryable)

    def _stop_body(self) -> None:
        body, self._body = self._body, None
        if body is not None and self.tcp is not None:
            self.tcp.unregisterProducer()
            body.stopProducing()

    def _drop(self, abort: bool = False) -> None:
        self._parser = None
        if self.tcp is not None:
            if abort:
                self.tcp.abortConnection()
            else:
                self.tcp.loseConnection()

    def connectionLost(self, reason: Failure = Failure(ConnectionError())) -> None:
        self.lost = True
        self._pool.forget(self)
        parser, self._parser = self._parser, None
        ended = parser is not None and not parser.done and parser.connection_lost()
        handler, self._handler = self._handler, None  # None if ``end`` ran just now
        self._stop_body()
        if handler is not None and not ended:
            got_bytes = parser is not None and parser.got_bytes
            handler.failed(retryable=self.reused and not got_bytes)
        self.closed.callback(None)


class _ConnectionFactory(Factory):
    def __init__(self, pool: UpstreamPool, key: _Key) -> None:
        self._pool = pool
        self._key = key

    def buildProtocol(self, addr: object) -> UpstreamConnection:
        return UpstreamConnection(self._pool, self._key)


class UpstreamPool:
    """Idle keep-alive connections per ``host:port`` and the dialling of new ones."""

    def __init__(self, reactor: IReactorTCP, *, max_idle_per_upstream: int, idle_seconds: float,
                 connect_timeout_seconds: float) -> None:
        self._reactor = reactor
        self._clock = IReactorTime(reactor)
        self._max_idle = max_idle_per_upstream
        self._idle_seconds = idle_seconds
        self._connect_timeout = connect_timeout_seconds
        self._idle: dict[_Key, list[UpstreamConnection]] = {}
        self.dialled = 0

    def idle_connection(self, host: str, port: int) -> UpstreamConnection | None:
        """An idle connection to reuse at once, or None (then :meth:`dial`)."""
        idle = self._idle.get((host, port))
        while idle:
            conn = idle.pop()
            if not idle:
                del self._idle[(host, port)]
            self._stop_idle_timer(conn)
            if not conn.lost:
                conn.reused = True
                return conn
        return None

    def dial(self, host: str, port: int) -> Deferred[UpstreamConnection]:
        """A new connection (cancellable while connecting)."""
        self.dialled += 1
        factory = _ConnectionFactory(self, (host, port))
        connected = app_endpoint(self._reactor, host, port, self._connect_timeout).connect(factory)
        return cast("Deferred[UpstreamConnection]", connected)

    def release(self, conn: UpstreamConnection) -> None:
        assert conn.tcp is not None
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) >= self._max_idle:
            conn.tcp.loseConnection()
            return
        conn.tcp.resumeProducing()  # a slow client may have paused it
        conn.idle_call = self._clock.callLater(self._idle_seconds, self._expire, conn)
        idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        """A connection closed: never hand it out again."""
        self._stop_idle_timer(conn)
        idle = self._idle.get(conn.key)
        if idle is not None and conn in idle:
            idle.remove(conn)
            if not idle:
                del self._idle[conn.key]

    async def close(self) -> None:
        """Closes every idle connection and waits until they are gone (busy ones are their
        owners' to abort)."""
        waiting: list[Deferred[None]] = []
        for idle in list(self._idle.values()):
            for conn in list(idle):
                self._stop_idle_timer(conn)
                waiting.append(conn.closed)
                if conn.transport is not None:
                    conn.transport.loseConnection()
        self._idle.clear()
        for closed in waiting:
            await closed

    def _expire(self, conn: UpstreamConnection) -> None:
        conn.idle_call = None
        self.forget(conn)
        if conn.transport is not None:
            conn.transport.loseConnection()

    def _stop_idle_timer(self, conn: UpstreamConnection) -> None:
        if conn.idle_call is not None:
            if conn.idle_call.active():
                conn.idle_call.cancel()
            conn.idle_call = None
