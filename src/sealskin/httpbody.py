"""Request bodies with a size limit, shared by both ports' sites.

Twisted buffers a whole body before any resource runs, so the limit must be
applied while the body arrives: past it the body is dropped (never stored) and
the API answers 413.
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.web.server import Request

__all__ = ["LimitedRequest", "limited_request_factory"]


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
        super().gotLength(None if self.body_too_large else length)

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        if self._received > self._limit():
            self.body_too_large = True
        if not self.body_too_large:
            super().handleContentChunk(data)


def limited_request_factory(max_body_bytes: int, max_bodies: Mapping[bytes, int],
                            base: type[LimitedRequest] = LimitedRequest) -> type[LimitedRequest]:
    """A subclass of ``base`` with these limits (``max_bodies``: per exact path)."""
    return type("SizedRequest", (base,),
                {"max_body_bytes": max_body_bytes, "max_bodies": dict(max_bodies)})


