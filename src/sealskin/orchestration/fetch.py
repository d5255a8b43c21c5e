"""Bounded HTTP(S) GETs on the reactor, for app stores and their autostart scripts.

treq over Twisted's ``Agent``: HTTPS certificates are verified by the Agent's
default ``BrowserLikePolicyForHTTPS`` (platform trust roots, host names checked
with ``service_identity``); redirects are followed. Every fetch has a deadline
that covers the headers *and* the body, and a body size limit: past either the
connection is aborted, so a silent or endless server cannot hold us.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.error import ConnectError, DNSLookupError
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone, ResponseFailed
from twisted.web.http import PotentialDataLoss
from twisted.web.iweb import IResponse
from treq.client import HTTPClient


class FetchError(Exception):
    """A fetch that failed; ``detail`` is a client-facing sentence."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@attrs.frozen
class Fetched:
    status: int  # 200, 304 (not modified: empty body) or one of ``accept``
    body: bytes
    etag: str | None
    headers: Mapping[str, str] = attrs.field(factory=dict)  # lower-case name -> first value


class _TooLarge(Exception):
    pass


class _Body(Protocol):
    """Collects a response body up to ``max_bytes``; aborts the connection past it."""

    def __init__(self, done: Deferred[bytes], max_bytes: int) -> None:
        self._done = done
        self._max_bytes = max_bytes
        self._parts: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        if self._done.called:
            return
        self._size += len(data)
        if self._size > self._max_bytes:
            self.abort()
            self._done.errback(_TooLarge())
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self._done.called or reason is None:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self._done.callback(b"".join(self._parts))
        else:
            self._done.errback(reason)

    def abort(self) -> None:
        if self.transport is not None:  # the body's transport is an IPushProducer
            self.transport.stopProducing()  # type: ignore[attr-defined]  # typed ITransport, is an IPushProducer


class Fetcher:
    """HTTP(S) GETs with If-None-Match, a deadline and a size limit."""

    def __init__(self, reactor: Any, *, timeout_seconds: float, max_bytes: int) -> None:
        self._reactor = reactor
        self._timeout_seconds = timeout_seconds
        self.max_bytes = max_bytes
        # not persistent: nothing stays open between fetches
        pool = HTTPConnectionPool(reactor, persistent=False)
        self._http = HTTPClient(Agent(reactor, pool=pool))

    async def get(self, url: str, *, etag: str | None = None,
                  timeout_seconds: float | None = None,
                  headers: Mapping[str, str] | None = None,
                  accept: tuple[int, ...] = (200, 404)) -> Fetched:
        """Raises FetchError (network failure, timeout, oversized body, status not in
        ``accept`` or 304). Safe to cancel: the connection is dropped.
        """
        sent: dict[str | bytes, list[str | bytes]] = {k: [v] for k, v in (headers or {}).items()}
        if etag:
            sent["If-None-Match"] = [etag]
        deadline = timeout_seconds or self._timeout_seconds
        attempt = Deferred.fromCoroutine(self._get(url, sent, accept))
        _ = attempt.addTimeout(deadline, self._reactor)
        try:
            return await attempt
        except TimeoutError:
            raise FetchError(f"{_where(url)} did not answer within {deadline:g} s.") from None
        except _TooLarge:
            raise FetchError(f"{_where(url)} sent more than {self.max_bytes} bytes.") from None
        except (DNSLookupError, ConnectError, ResponseFailed, OSError):
            raise FetchError(f"{_where(url)} could not be reached.") from None

    async def _get(self, url: str, headers: dict[str | bytes, list[str | bytes]],
                   accept: tuple[int, ...]) -> Fetched:
        response: IResponse = await self._http.get(url, headers=headers, unbuffered=True)
        if response.code == 304:
            return Fetched(304, b"", _etag(response), _headers(response))
        done: Deferred[bytes] = Deferred()
        body = _Body(done, self.max_bytes)
        response.deliverBody(body)
        if response.code not in accept:
            body.abort()
            raise FetchError(f"{_where(url)} answered HTTP {response.code}.")
        try:
            data = await done
        except CancelledError:
            body.abort()
            raise
        return Fetched(response.code, data, _etag(response), _headers(response))


def _headers(response: IResponse) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v[0].decode("latin-1")
            for k, v in response.headers.getAllRawHeaders() if v}


def _etag(response: IResponse) -> str | None:
    values = response.headers.getRawHeaders(b"etag")
    return values[0].decode("latin-1") if values else None


def _where(url: str) -> str:
    """The URL without credentials or query, for sentences and logs."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"The server at {scheme}://{host}"
