"""HTTPS for tests: trust exactly the server's own (self-signed) certificate."""

from __future__ import annotations

from typing import Any

from twisted.internet import ssl
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool


def pinned_agent(reactor: Any, cert_path: str) -> Agent:
    """An Agent that verifies the server against ``cert_path`` (service_identity checks
    the name), with no persistent connections so tests end with no sockets."""
    with open(cert_path, "rb") as f:
        trust = ssl.Certificate.loadPEM(f.read())
    policy = BrowserLikePolicyForHTTPS(trustRoot=trust)
    return Agent(reactor, contextFactory=policy,
                 pool=HTTPConnectionPool(reactor, persistent=False))
