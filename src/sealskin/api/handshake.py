"""Handlers: the two plaintext handshake steps (upstream-protocol 2.1, 2.2).

Each costs the server one RSA private-key operation, run on the work pool so
both cores work and the reactor keeps serving; handshakes are rate-limited per
client address before any RSA work is done.
"""

from __future__ import annotations

import collections
import json

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from twisted.internet.defer import Deferred
from twisted.web.iweb import IRequest

from sealskin.api import wire
from sealskin.api.edge import client_address
from sealskin.blocking import Pool
from sealskin.crypto import HandshakeError, handshake
from sealskin.crypto.sessions import CryptoSessions, RateLimiter
from sealskin.errors import ApiError, Kind


def _thd_sign_nonces(key: RSAPrivateKey, count: int) -> list[dict[str, str]]:
    return [handshake.initiate(key) for _ in range(count)]


class HandshakeHandlers:
    """``initiate`` answers come from a small pool signed ahead of time on the work
    pool: the nonce is the server's own random choice, bound to nothing the client
    sends (upstream-protocol 2.1), so signing it before the request changes nothing
    on the wire and takes one RSA operation off each handshake's critical path.
    Each answer is used once."""

    def __init__(self, server_key: RSAPrivateKey, sessions: CryptoSessions,
                 limiter: RateLimiter, work: Pool, *, presigned: int = 32) -> None:
        self._key = server_key
        self._sessions = sessions
        self._limiter = limiter
        self._work = work
        self._presigned: collections.deque[dict[str, str]] = collections.deque()
        self._target = presigned
        self._refilling = False

    def _refill(self) -> None:
        if self._refilling or len(self._presigned) >= self._target // 2:
            return
        self._refilling = True
        d = Deferred.fromCoroutine(self._work.run(
            _thd_sign_nonces, self._key, self._target - len(self._presigned)))

        def done(signed: object) -> None:
            self._refilling = False
            if isinstance(signed, list):
                self._presigned.extend(signed)

        _ = d.addBoth(done)

    def _admit(self, request: IRequest) -> None:
        if not self._limiter.allow(client_address(request)):
            request.setHeader(b"retry-after", b"1")
            raise ApiError(Kind.LIMITED, "Too many handshakes; retry shortly.")

    async def initiate(self, request: IRequest) -> wire.Json:
        self._admit(request)
        if self._presigned:
            answer = self._presigned.popleft()
        else:
            answer = await self._work.run(handshake.initiate, self._key)
        self._refill()
        return answer

    async def exchange(self, request: IRequest) -> wire.Json:
        self._admit(request)
        try:
            body = json.loads(request.content.read() if request.content else b"")
        except (ValueError, RecursionError):  # deeply nested garbage is still garbage
            raise ApiError(Kind.HANDSHAKE, "Failed to decrypt session key") from None
        if not isinstance(body, dict):
            raise ApiError(Kind.HANDSHAKE, "Failed to decrypt session key")
        try:
            key = await self._work.run(handshake.unwrap_session_key, self._key,
                                       body.get("encrypted_session_key"))
        except HandshakeError:
            raise ApiError(Kind.HANDSHAKE, "Failed to decrypt session key") from None
        return {"session_id": self._sessions.add(key)}
