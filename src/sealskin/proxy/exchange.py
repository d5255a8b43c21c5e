"""One proxied HTTP request (:class:`Exchange`) and its streamed body (:class:`UploadStream`).

See :mod:`sealskin.proxy.http` for what the proxy does; this module holds the per-request
state machine: send the request upstream on a pooled connection, wait until the client's
request was parsed whole, relay the answer with backpressure, and answer 502/503/504 or cut
the client when something fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IConsumer, IDelayedCall, IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.http_headers import Headers
from twisted.web.iweb import UNKNOWN_LENGTH, IBodyProducer
from zope.interface import implementer

from sealskin.model import SessionRoute
from sealskin.proxy.gate import ACCESS_TOKEN, json_error, query_without
from sealskin.proxy.upstream import UpstreamConnection

if TYPE_CHECKING:
    from sealskin.proxy.http import HttpForwarder

__all__ = ["Exchange", "UploadStream", "connection_tokens", "is_hop"]

log = Logger()

_HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"te", b"trailer", b"trailers", b"transfer-encoding",
    b"upgrade", b"proxy-connection", b"proxy-authenticate", b"proxy-authorization",
})
# Client copies that we drop because we set or compute them ourselves.

def connection_tokens(headers: Headers) -> frozenset[bytes]:
    return frozenset(token.strip().lower()
                     for line in headers.getRawHeaders(b"connection", [])
                     for token in line.split(b","))


def is_hop(low_name: bytes, named: frozenset[bytes]) -> bool:
    return low_name in _HOP_BY_HOP or low_name.startswith(b"proxy-") or low_name in named


def _pause_reading(request: server.Request) -> None:
    producer = IPushProducer(request.channel.transport, None)
    if producer is not None:
        producer.pauseProducing()


def _resume_reading(request: server.Request) -> None:
    producer = IPushProducer(request.channel.transport, None)
    if producer is not None:
        producer.resumeProducing()


_ORIGIN_FORM = re.compile(rb"/[\x21-\x7e\x80-\xff]*")


def _valid_target(target: bytes) -> bool:
    """An origin-form target without spaces or control characters (never a header splice)."""
    return _ORIGIN_FORM.fullmatch(target) is not None


@implementer(IBodyProducer)
class UploadStream:
    """Feeds a client request body to the upstream connection, pausing the client as needed.

    Bytes that arrive before the upstream connection starts us (while connecting) or while the upstream is paused
    are kept in ``_pending`` and the client is paused; TCP then stops the sender, so ``_pending``
    holds at most a few socket reads.
    """

    def __init__(self, request: server.Request, length: int | None) -> None:
        self.length: int | object = UNKNOWN_LENGTH if length is None else length
        self.known_length = length
        self._request = request
        self._consumer: IConsumer | None = None
        self._pending: list[bytes] = []
        self._paused = False
        self._complete = False
        self._stopped = False
        self._done: Deferred[None] | None = None
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
        elif not self._complete:
            _resume_reading(self._request)


class Exchange:
    """One proxied request: send it, relay the answer; abortable at any point.

    Implements :class:`~sealskin.proxy.upstream.UpstreamHandler`. The answer is written to the
    client only once the client's request was parsed whole (``request_ready``; Twisted needs
    that): until then a head that came early waits, with its connection paused.
    """

    def __init__(self, forwarder: HttpForwarder, request: server.Request, session_id: str,
                 route: SessionRoute, method: bytes, uri: bytes, body: bytes | UploadStream) -> None:
        self._forwarder = forwarder
        self.request = request
        self.session_id = session_id
        self._route = route
        self._method = method
        self._uri = uri
        self._body = body
        self._ready = False
        self._waiting: list[Callable[[], None]] = []  # run once ready
        self._dialling: Deferred[UpstreamConnection] | None = None
        self._conn: UpstreamConnection | None = None
        self._timer: IDelayedCall | None = None
        self._head = b""
        self._retried = False
        self._answered = False  # a head or an error has been decided
        self._relaying = False  # the client response has started
        self._finished = False
        self._client_gone = False

    def start(self) -> None:
        self._forwarder.track(self)
        _ = self.request.notifyFinish().addErrback(self._client_lost)
        self._forwarder.directory.touch(self.session_id)
        path, sep, query = self._uri.partition(b"?")
        query = query_without(query, ACCESS_TOKEN) if sep else b""
        target = path + (b"?" + query if query else b"")
        if not _valid_target(target):
            self._error(400, "Invalid request target.")
            return
        self._head = self._forwarder.request_head(self.request, self._route, self._method,
                                                  target, self._body)
        self._connect()

    def request_ready(self) -> None:
        """The client request has been parsed completely: the response may be written."""
        if self._ready:
            return
        self._ready = True
        waiting, self._waiting = self._waiting, []
        for action in waiting:
            action()

    def abort(self) -> None:
        """Session ended or shutdown: stop the upstream request, answer 503 or cut the client."""
        self._stop_upstream()
        if self._relaying:
            _abort_client(self.request)
            self._done()
        else:
            self._error(503, "The session has ended.")

    # -- upstream ---------------------------------------------------------------------------

    def _connect(self) -> None:
        pool = self._forwarder.pool
        conn = pool.idle_connection(self._route.host, self._route.port)
        if conn is not None:
            self._send(conn)
            return
        self._dialling = pool.dial(self._route.host, self._route.port)
        _ = self._dialling.addCallbacks(self._send, self._dial_failed)

    def _send(self, conn: UpstreamConnection) -> None:
        self._dialling = None
        self._conn = conn
        conn.send(self._head, self._body, self, head_request=self._method == b"HEAD")

    def _dial_failed(self, failure: Failure) -> None:
        self._dialling = None
        if not failure.check(CancelledError):
            log.debug("upstream of session {session_id} unreachable", session_id=self.session_id)
            self._error(502, "The application cannot be reached.")

    def request_sent(self) -> None:
        if not self._answered and not self._client_gone:
            self._timer = self._forwarder.clock.callLater(
                self._forwarder.limits.response_timeout_seconds, self._time_out)

    def head(self, code: int, phrase: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self._cancel_timer()
        self._answered = True
        if self._ready:
            self._begin_response(code, phrase, headers)
            return
        tcp = self._conn.tcp if self._conn is not None else None
        if tcp is not None:
            tcp.pauseProducing()

        def later() -> None:
            if tcp is not None:
                tcp.resumeProducing()
            self._begin_response(code, phrase, headers)
        self._waiting.append(later)

    def data(self, chunk: bytes) -> None:
        if self._relaying:
            self.request.write(chunk)
        else:
            self._waiting.append(lambda: self.request.write(chunk))

    def end(self) -> None:
        self._conn = None

        def finish() -> None:
            self._unregister()
            if not self.request.finished and not self._client_gone:
                self.request.finish()
            self._done()
        self._when_ready(finish)

    def failed(self, *, retryable: bool) -> None:
        self._conn = None
        self._cancel_timer()
        if retryable and not self._retried and isinstance(self._body, bytes):
            self._retried = True  # an idle connection the app closed meanwhile: once more
            self._connect()
            return
        if self._relaying:
            log.debug("upstream response of session {session_id} cut", session_id=self.session_id)
            self._unregister()
            _abort_client(self.request)
            self._done()
        else:
            self._error(502, "The application cannot be reached.")

    def _time_out(self) -> None:
        self._timer = None
        self._stop_upstream()
        self._error(504, "The application did not answer in time.")

    # -- client -----------------------------------------------------------------------------

    def _begin_response(self, code: int, phrase: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        if self._client_gone or self.request.finished:
            self._stop_upstream()
            self._done()
            return
        request = self.request
        request.defaultContentType = None
        request.setResponseCode(code, phrase)
        named = frozenset(token for name, value in headers if name.lower() == b"connection"
                          for token in value.lower().replace(b" ", b"").split(b","))
        grouped: dict[bytes, list[bytes]] = {}
        for name, value in headers:
            low = name.lower()
            if not is_hop(low, named):
                grouped.setdefault(low, []).append(value)
        for low, values in grouped.items():  # replaces Twisted's own Server and Date
            request.responseHeaders.setRawHeaders(low, values)
        self._relaying = True
        if self._conn is not None and self._conn.tcp is not None:
            request.registerProducer(self._conn.tcp, True)

    def _error(self, status: int, detail: str) -> None:
        """Answers ``status`` instead of anything still waiting for ``request_ready``."""
        self._answered = True
        self._waiting.clear()
        if isinstance(self._body, UploadStream):
            self._body.stopProducing()  # drain the rest of the upload so we can answer

        def answer() -> None:
            if self._client_gone or self.request.finished:
                pass
            elif self.request.startedWriting:
                _abort_client(self.request)
            else:
                self.request.write(json_error(self.request, status, detail))
                self.request.finish()
            self._done()
        self._when_ready(answer)

    def _when_ready(self, action: Callable[[], None]) -> None:
        if self._ready:
            action()
        else:
            self._waiting.append(action)

    def _client_lost(self, reason: Failure) -> None:
        self._client_gone = True
        self._stop_upstream()
        if isinstance(self._body, UploadStream):
            self._body.stopProducing()
        self._waiting.clear()
        self._done()

    def _stop_upstream(self) -> None:
        self._cancel_timer()
        if self._dialling is not None:
            dialling, self._dialling = self._dialling, None
            dialling.cancel()
        if self._conn is not None:
            conn, self._conn = self._conn, None
            self._unregister()
            conn.abort()
        if isinstance(self._body, UploadStream):
            self._body.stopProducing()  # drain the rest of the upload so we can answer

    def _unregister(self) -> None:
        if self._relaying and self.request.producer is not None and self.request.channel is not None:
            self.request.unregisterProducer()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _done(self) -> None:
        if self._finished:
            return
        self._finished = True
        self._forwarder.untrack(self)
        self._forwarder.directory.touch(self.session_id)


def _abort_client(request: server.Request) -> None:
    transport = request.channel.transport if request.channel is not None else None
    abort: Callable[[], None] | None = getattr(transport, "abortConnection", None)
    if abort is not None:
        abort()
