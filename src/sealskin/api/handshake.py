"""Handlers: the two plaintext handshake steps (upstream-protocol 2.1, 2.2).

Each costs the server one RSA private-key operation, run on the work pool so
both cores work and the reactor keeps serving; handshakes are rate-limited per
client address before any RSA work is done.
"""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from twisted.web.iweb import IRequest

from sealskin.api import wire
from sealskin.api.edge import client_address
from sealskin.blocking import Pool
from sealskin.crypto import HandshakeError, handshake
from sealskin.crypto.sessions import CryptoSessions, RateLimiter
from sealskin.errors import ApiError, Kind


class HandshakeHandlers:
    def __init__(self, server_key: RSAPrivateKey, sessions: CryptoSessions,
                 limiter: RateLimiter, work: Pool) -> None:
        self._key = server_key
        self._sessions = sessions
        self._limiter = limiter
        self._work = work

    def _admit(self, request: IRequest) -> None:
        if not self._limiter.allow(client_address(request)):
            request.setHeader(b"retry-after", b"1")
            raise ApiError(Kind.LIMITED, "Too many handshakes; retry shortly.")

    async def initiate(self, request: IRequest) -> wire.Json:
        self._admit(request)
        return await self._work.run(handshake.initiate, self._key)

    async def exchange(self, request: IRequest) -> wire.Json:
        self._admit(request)
        try:
            body = json.loads(request.content.read() if request.content else b"")
        except ValueError:
            raise ApiError(Kind.HANDSHAKE, "Failed to decrypt session key") from None
        if not isinstance(body, dict):
            raise ApiError(Kind.HANDSHAKE, "Failed to decrypt session key")
        try:
            key = await self._work.run(handshake.unwrap_session_key, self._key,
                                       body.get("encrypted_session_key"))
        except HandshakeError:
            raise ApiError(Kind.HANDSHAKE, "Failed to decrypt session key") from None
        return {"session_id": self._sessions.add(key)}
