"""The API edge: envelope, authentication, roles, body limits and error rendering.

Order on encrypted routes (upstream-protocol 2.11): crypto session (400) ->
JWT (401, inactive 403) -> role (403) -> decrypt + parse body (400) -> handler.
A handler returning a value answers 200 + envelope, ``None`` answers 204;
``ApiError`` answers plaintext ``{"detail": ...}`` with its status.
"""

from __future__ import annotations

import enum
import io
import os
from http import HTTPStatus
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol
from urllib.parse import parse_qsl

import attrs
import orjson
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from sealskin.blocking import Pool
from sealskin.crypto import CryptoError, EnvelopeError, PlaintextError, envelope, inplace
from sealskin.crypto.sessions import CryptoSessions
from sealskin.errors import ApiError, Kind
from sealskin.model import Principal

log = Logger()

BAD_SESSION = envelope.UNKNOWN_SESSION
BAD_BODY = envelope.DECRYPT_FAILED


class Access(enum.Enum):
    PLAIN = "plain"  # no envelope, no auth (handshake)
    USER = "user"  # envelope + any active principal
    ADMIN = "admin"  # envelope + admin


@attrs.frozen
class Call:
    """What a handler sees: the caller, the decrypted body and the query."""

    caller: Principal
    body: Mapping[str, Any]
    query: Mapping[str, str]
    address: str


Handler = Callable[..., Awaitable[object]]


@attrs.frozen
class Route:
    method: str
    path: str  # Klein/werkzeug rule, e.g. "/api/admin/users/<username>"
    handler: Handler
    access: Access
    # a member that may hold a big base64 string: handed over as an inplace.Base64Text
    base64_member: str | None = None


class Content(Protocol):
    """A received body as Twisted keeps it: ``BytesIO`` or a temporary file."""

    def seek(self, offset: int, whence: int = ..., /) -> int: ...

    def readinto(self, buffer: bytearray, /) -> int: ...


class Authenticator(Protocol):
    async def authenticate(self, authorization: str | None) -> Principal:
        """Raises ApiError UNAUTHENTICATED / FORBIDDEN."""
        ...


def render_error(request: IRequest, status: int, detail: str) -> bytes:
    request.setResponseCode(status, _phrase(status))
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps({"detail": detail}).encode()


def _phrase(status: int) -> bytes:
    """Twisted's table lacks some reasons (429 came out as "Unknown Status")."""
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b"Error"


def render_json(request: IRequest, value: object, status: int = 200) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(value, separators=(",", ":")).encode()


def client_address(request: IRequest) -> str:
    """The client's address; for requests relayed by a proxy worker, the one it saw
    (set by the primary's internal listener after checking the worker's secret)."""
    forwarded = getattr(request, "forwarded_for", None)
    if isinstance(forwarded, str):
        return forwarded
    peer = request.getClientAddress()
    return str(getattr(peer, "host", "unknown"))


def _header(request: IRequest, name: bytes) -> str | None:
    raw = request.getHeader(name)
    if raw is None:
        return None
    return raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)


def _query(request: IRequest) -> dict[str, str]:
    uri: bytes = request.uri
    if b"?" not in uri:
        return {}
    text = uri.split(b"?", 1)[1].decode("utf-8", "replace")
    return dict(parse_qsl(text, keep_blank_values=True))  # form semantics: '+' is a space


class Edge:
    """Wraps handlers with the envelope, auth and error rules."""

    def __init__(self, crypto: CryptoSessions, auth: Authenticator,
                 work: Pool | None = None) -> None:
        self._crypto = crypto
        self._auth = auth
        self._work = work  # opens big bodies (upload chunks) off the reactor
        self._in_flight = 0
        self._drained: list[Deferred[None]] = []

    async def drain(self, clock: IReactorTime, grace_seconds: float) -> int:
        """At shutdown: waits up to ``grace_seconds`` for in-flight requests; returns how
        many were still running (their connections are then closed with the listeners)."""
        if self._in_flight:
            waiter: Deferred[None] = Deferred()
            self._drained.append(waiter)
            _ = waiter.addTimeout(grace_seconds, clock, onTimeoutCancel=lambda *_: None)
            await waiter
        return self._in_flight

    async def serve(self, route: Route, request: IRequest, params: Mapping[str, str]) -> bytes:
        """Runs one request; never raises (errors become responses)."""
        self._in_flight += 1
        try:
            return await self._serve(route, request, params)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                waiters, self._drained = self._drained, []
                for waiter in waiters:
                    if not waiter.called:
                        waiter.callback(None)

    async def _serve(self, route: Route, request: IRequest, params: Mapping[str, str]) -> bytes:
        try:
            if getattr(request, "body_too_large", False):
                raise ApiError(Kind.TOO_LARGE, "Request body too large.")
            if route.access is Access.PLAIN:
                return render_json(request, await route.handler(request, **params))
            return await self._serve_encrypted(route, request, params)
        except ApiError as e:
            if e.status >= 500:
                log.warn("{method} {path}: {status} {detail}", method=route.method,
                         path=route.path, status=e.status, detail=e.detail)
            else:
                log.debug("{method} {path}: {status} {detail}", method=route.method,
                          path=route.path, status=e.status, detail=e.detail)
            return render_error(request, e.status, e.detail)
        except CancelledError:
            raise
        except Exception:
            log.failure("unhandled error in {method} {path}", method=route.method,
                        path=route.path)
            return render_error(request, 500, "internal error")

    async def _serve_encrypted(self, route: Route, request: IRequest,
                               params: Mapping[str, str]) -> bytes:
        sid = _header(request, b"x-session-id")
        key = self._crypto.get(sid) if sid else None
        if key is None or sid is None:
            raise ApiError(Kind.HANDSHAKE, BAD_SESSION)
        caller = await self._auth.authenticate(_header(request, b"authorization"))
        if route.access is Access.ADMIN and not caller.is_admin:
            raise ApiError(Kind.FORBIDDEN, "Admin privileges required.")
        body = await self._open_body(route, sid, key, request.content)
        call = Call(caller, body, _query(request), client_address(request))
        result = await route.handler(call, **params)
        if result is None:
            request.setResponseCode(204)
            request.setHeader(b"cache-control", b"no-store")
            return b""
        return render_json(request, envelope.seal(key, json.dumps(
            result, separators=(",", ":")).encode()))

    async def _open_body(self, route: Route, sid: str, key: bytes,
                         content: Content | None) -> Mapping[str, Any]:
        """The decrypted JSON object; an empty body is ``{}`` (upstream-protocol 2.7).

        A body of FAST_JSON_BYTES or more (an upload chunk's is ~15 MB) is read and
        opened in place on the work pool, so the reactor keeps receiving meanwhile.
        """
        size = _size(content)
        try:
            if content is None or not size:
                return {}
            fileno = None if isinstance(content, io.BytesIO) else getattr(content, "fileno", None)
            if size < envelope.FAST_JSON_BYTES or self._work is None or fileno is None:
                opened = _thd_open(key, content, size, None)
            else:
                # Our own descriptor: Twisted closes its file if the client goes away meanwhile.
                own = io.FileIO(os.dup(fileno()), "rb")
                opened = await self._work.run(_thd_open_own, key, own, size, route.base64_member)
        except PlaintextError as e:  # ours: the envelope was fine, its content is not
            raise ApiError(Kind.HANDSHAKE, str(e)) from None
        except CryptoError:  # the wire text of upstream-protocol 2.3, whatever the cause
            raise ApiError(Kind.HANDSHAKE, BAD_BODY) from None
        if opened is None:
            return {}
        iv, body = opened
        if not self._crypto.note_iv(sid, iv):
            raise ApiError(Kind.HANDSHAKE, "Replayed request refused.")
        return body


def _size(content: Content | None) -> int:
    """The size of a received body (Twisted keeps it in memory or in a temporary file)."""
    if content is None:
        return 0
    size = content.seek(0, io.SEEK_END)
    content.seek(0)
    return size


def _thd_open_own(key: bytes, own: io.FileIO, size: int, member: str | None,
                  ) -> tuple[bytes, dict[str, object]] | None:
    """:func:`_thd_open` on a file of our own, closed afterwards."""
    with own:
        own.seek(0)
        return _thd_open(key, own, size, member)


def _thd_open(key: bytes, content: Content, size: int, member: str | None,
              ) -> tuple[bytes, dict[str, object]] | None:
    """``(iv, body)``, None for a blank body; EnvelopeError. Run on the work pool for
    big bodies: they take one buffer of ``size`` bytes, reused in place."""
    buf = bytearray(size)
    content.readinto(buf)
    if buf.isspace():  # (no strip(): it would copy a 15 MB body)
        return None
    if size >= envelope.FAST_JSON_BYTES:
        return inplace.open_in_place(key, buf, member)
    try:
        wrapped = orjson.loads(buf)
    except ValueError:
        raise EnvelopeError(BAD_BODY) from None
    return envelope.open_json(key, wrapped)
