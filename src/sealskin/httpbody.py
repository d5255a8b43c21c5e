"""Request bodies with a size limit, shared by both ports' sites.

Twisted buffers a whole body before any resource runs, so the limit must be
applied while the body arrives: past it the body is dropped (never stored) and
the API answers 413.
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IConsumer
from twisted.web.iweb import IBodyProducer
from twisted.web.server import Request
from zope.interface import implementer

__all__ = ["BytesBody", "LimitedRequest", "limited_request_factory"]

_TOO_LARGE = b'{"detail": "Request body too large."}'


class LimitedRequest(Request):
    """A Request that stops storing its body past a size limit (answered 413 later).

    Twisted buffers whole bodies before any resource runs, so the limit must be
    applied here, while the body arrives. Limits come from the Site (see
    :func:`limited_request_factory`).
    """

    max_body_bytes = 1024 * 1024
    max_bodies: Mapping[bytes, int] = {}
    body_too_large = False
    _received = 0

    def _limit(self) -> int:
        path = getattr(self.channel, "_path", b"").split(b"?", 1)[0]
        return self.max_bodies.get(path, self.max_body_bytes)

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
                            base: type[LimitedRequest] = LimitedRequest) -> type[LimitedRequest]:
    """A subclass of ``base`` with these limits (``max_bodies``: per exact path)."""
    return type("SizedRequest", (base,),
                {"max_body_bytes": max_body_bytes, "max_bodies": dict(max_bodies)})


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
