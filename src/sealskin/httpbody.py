"""Request bodies with a size limit, shared by both ports' sites.

Twisted buffers a whole body before any resource runs, so the limit must be
applied while the body arrives: past it the body is dropped (never stored) and
the API answers 413.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from http import HTTPStatus
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IConsumer
from twisted.web.http import HTTPChannel
from twisted.web.iweb import IBodyProducer
from twisted.web.server import Request
from zope.interface import implementer

__all__ = ["BoundedChannel", "BytesBody", "channel_factory", "LimitedRequest", "limited_request_factory"]

_TOO_LARGE = b'{"detail": "Request body too large."}'


class BoundedChannel(HTTPChannel):
    """Twisted's HTTP channel, with its head limits answered in JSON instead of hanging.

    Twisted caps a request head (``MAX_LENGTH`` per line, ``totalHeadersSize`` in all, both
    16 KiB). Past a line's cap it called ``transport.loseConnection()`` while the channel was
    still the transport's producer, so the connection stayed open, unanswered, until the idle
    timeout; its other refusals are a bare ``400``. Here: 414 for a request line too long,
    431 for headers too large, 400 otherwise, each with ``{"detail"}``, then the connection
    closes.
    """

    def lineLengthExceeded(self, line: bytes) -> None:
        if getattr(self, "_HTTPChannel__first_line", False):
            self._refuse(HTTPStatus.REQUEST_URI_TOO_LONG, "The request target is too long.")
        else:
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                         "The request headers are too large.")

    def lineReceived(self, line: bytes) -> None:
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._refuse(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                         "The request headers are too large.")
            return
        super().lineReceived(line)  # type: ignore[no-untyped-call]  # Twisted leaves this untyped

    def _respondToBadRequestAndDisconnect(self) -> None:
        self._refuse(HTTPStatus.BAD_REQUEST, "Malformed HTTP request.")

    def _refuse(self, status: HTTPStatus, detail: str) -> None:
        body = b'{"detail": "%s"}' % detail.encode()
        self.transport.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"  # type: ignore[union-attr]  # connected
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                             % (status.value, status.phrase.encode(), len(body), body))
        self._refused = True
        self.clearLineBuffer()  # type: ignore[no-untyped-call]  # nothing more is parsed
        self.loseConnection()  # type: ignore[no-untyped-call]  # unregisters the producer too

    _refused = False

    def dataReceived(self, data: bytes) -> None:
        if not self._refused:
            super().dataReceived(data)  # type: ignore[no-untyped-call]  # Twisted leaves this untyped


def channel_factory(max_head_bytes: int = 16384) -> Any:
    """A ``Site.protocol`` building :class:`BoundedChannel` with a request head of at most
    ``max_head_bytes`` (one line and all lines). HTTP/1.1 only, as before: the optional
    ``h2`` package is not a dependency, so no HTTP/2 is negotiated."""

    def build() -> BoundedChannel:
        channel = BoundedChannel()  # type: ignore[no-untyped-call]  # Twisted leaves this untyped
        channel.MAX_LENGTH = channel.totalHeadersSize = max_head_bytes
        return channel

    return build


class LimitedRequest(Request):
    """A Request that stops storing its body past a size limit (answered 413 later).

    Twisted buffers whole bodies before any resource runs, so the limit must be
    applied here, while the body arrives. Limits come from the Site (see
    :func:`limited_request_factory`).
    """

    max_body_bytes = 1024 * 1024
    max_bodies: Mapping[bytes, int] = {}
    max_body_prefixes: Sequence[tuple[bytes, int]] = ()
    body_too_large = False
    _received = 0

    def _limit(self) -> int:
        path = getattr(self.channel, "_path", b"").split(b"?", 1)[0]
        exact = self.max_bodies.get(path)
        if exact is not None:
            return exact
        for prefix, limit in self.max_body_prefixes:
            if path.startswith(prefix):
                return limit
        return self.max_body_bytes

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self._limit():
            self.body_too_large = True
            self._refuse_now()
        super().gotLength(None if self.body_too_large else length)  # type: ignore[no-untyped-call]  # Twisted leaves this untyped

    def _refuse_now(self) -> None:
        """A declared length over the limit is answered at once, before the body
        (a client waiting for ``100 Continue`` or sending slowly is not kept hanging)."""
        transport = getattr(self.channel, "transport", None)
        if transport is None:
            return
        transport.write(b"HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\n"
                        b"cache-control: no-store\r\nconnection: close\r\ncontent-length: %d"
                        b"\r\n\r\n%s" % (len(_TOO_LARGE), _TOO_LARGE))
        transport.loseConnection()

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        if self._received > self._limit():
            self.body_too_large = True
        if not self.body_too_large:
            super().handleContentChunk(data)  # type: ignore[no-untyped-call]  # Twisted leaves this untyped


def limited_request_factory(max_body_bytes: int, max_bodies: Mapping[bytes, int],
                            base: type[LimitedRequest] = LimitedRequest, *,
                            prefixes: Sequence[tuple[bytes, int]] = ()) -> type[LimitedRequest]:
    """A subclass of ``base`` with these limits (``max_bodies``: per exact path, then
    ``prefixes``: per path prefix, first match)."""
    return type("SizedRequest", (base,),
                {"max_body_bytes": max_body_bytes, "max_bodies": dict(max_bodies),
                 "max_body_prefixes": tuple(prefixes)})


def enveloped_bytes(raw_bytes: int) -> int:
    """The body that carries ``raw_bytes`` as base64 in a JSON request, inside the
    envelope (base64 again: 16/9 of it), with 64 KiB for the rest of the request."""
    return -(-raw_bytes * 16 // 9) + 64 * 1024


def app_body_bytes(max_body_bytes: int, icon_max_bytes: int) -> int:
    """The body limit of installed-app requests: room for a logo of ``icon_max_bytes``."""
    return max(max_body_bytes, enveloped_bytes(icon_max_bytes))


def api_request_factory(max_body_bytes: int, max_upload_body_bytes: int,
                        max_app_body_bytes: int,
                        base: type[LimitedRequest] = LimitedRequest) -> type[LimitedRequest]:
    """The API's body limits: upload chunks and installed apps (with logos) get their own."""
    return limited_request_factory(
        max_body_bytes, {b"/api/upload/chunk": max_upload_body_bytes}, base,
        prefixes=((b"/api/admin/apps/installed", max_app_body_bytes),))


@implementer(IBodyProducer)
class BytesBody:
    """A body already in memory, written at once (for ``Agent`` requests).

    treq's default producer would schedule on the global cooperator; a buffered
    body has nothing to stream anyway.
    """

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass
