"""A WebSocket test client (Autobahn) over TLS that trusts the server's own certificate."""

from __future__ import annotations

from typing import Any

from autobahn.twisted.websocket import (WebSocketClientFactory, WebSocketClientProtocol,
                                        connectWS)
from twisted.internet import ssl
from twisted.internet.defer import Deferred


class _Client(WebSocketClientProtocol):
    def onOpen(self) -> None:
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.messages.append((payload, isBinary))
        waiter, self.factory.waiter = self.factory.waiter, None
        if waiter is not None:
            waiter.callback((payload, isBinary))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(f"refused: {code} {reason}"))
        if not self.factory.closed.called:
            self.factory.closed.callback(code)


class WsConnection:
    def __init__(self, factory: Any) -> None:
        self.factory = factory
        self.protocol: Any = None

    async def send(self, payload: bytes, binary: bool = False) -> tuple[bytes, bool]:
        self.factory.waiter = Deferred()
        self.protocol.sendMessage(payload, isBinary=binary)
        result: tuple[bytes, bool] = await self.factory.waiter
        return result

    async def close(self, code: int = 1000) -> int | None:
        if not self.factory.closed.called:
            self.protocol.sendClose(code)
        result: int | None = await self.factory.closed
        return result

    @property
    def subprotocol(self) -> str | None:
        return self.protocol.websocket_protocol_in_use


async def ws_connect(reactor: Any, url: str, cert_path: str, *, headers: dict[str, str],
                     protocols: list[str] | None = None) -> WsConnection:
    factory = WebSocketClientFactory(url, headers=headers, protocols=protocols or [])
    factory.protocol = _Client
    factory.setProtocolOptions(autoPingInterval=0, openHandshakeTimeout=10,
                               closeHandshakeTimeout=2)
    factory.opened, factory.closed, factory.messages, factory.waiter = (
        Deferred(), Deferred(), [], None)
    with open(cert_path, "rb") as f:
        trust = ssl.Certificate.loadPEM(f.read())
    connectWS(factory, ssl.optionsForClientTLS("127.0.0.1", trustRoot=trust))
    conn = WsConnection(factory)
    conn.protocol = await factory.opened
    return conn
