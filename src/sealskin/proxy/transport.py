"""What the proxy uses of a connection to an app or a browser, and how it dials an app.

Twisted types ``Protocol.transport`` as a bare ``ITransport``; its TCP and TLS transports also
consume, produce and abort. :class:`Transport` names exactly that, for ``cast``.
"""

from __future__ import annotations

import ipaddress
from typing import Protocol

from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.interfaces import IProducer, IReactorTCP

__all__ = ["Transport", "app_endpoint", "netloc"]


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...

    def loseConnection(self) -> None: ...

    def abortConnection(self) -> None: ...

    def registerProducer(self, producer: IProducer, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...

    def setTcpNoDelay(self, enabled: bool) -> None: ...


def netloc(host: str, port: int) -> str:
    """``host:port``, IPv6 literals in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def app_endpoint(reactor: IReactorTCP, host: str, port: int,
                 timeout: float) -> TCP4ClientEndpoint | TCP6ClientEndpoint | HostnameEndpoint:
    """IP literals are dialled directly (no resolver thread); names go through the resolver."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return HostnameEndpoint(reactor, host.encode("idna"), port, timeout=timeout)
    if address.version == 6:
        return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
