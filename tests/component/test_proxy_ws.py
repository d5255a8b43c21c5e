"""WebSocket bridging through the session port, with Autobahn's client over real TLS."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS

from sealskin.proxy.ws import _ReactorTimer, acceleration
from test_proxy_support import APP_AUTH, ProxyEnv, open_session, proxy_cert, proxy_make, reactor, wait_for

__all__ = ["proxy_cert", "proxy_make"]


class Refused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class Browser(WebSocketClientProtocol):
    def __init__(self) -> None:
        super().__init__()
        self.opened: Deferred[Browser] = Deferred()
        self.closed: Deferred[int | None] = Deferred()
        self.messages: DeferredQueue[tuple[bytes, bool]] = DeferredQueue()

    def onOpen(self) -> None:
        self.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.messages.put((payload, isBinary))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.opened.called:
            line = getattr(self, "http_status_line", None) or "HTTP/1.1 0"
            self.opened.errback(Refused(int(line.split()[1])))
        self.closed.callback(code)


async def connect(env: ProxyEnv, cookie: str | None, *, origin: str | None = "same",
                  protocols: list[str] | None = None, session_id: str | None = None) -> Browser:
    sid = session_id or env.session_id
    url = f"wss://localhost:{env.port}/{sid}/websockify?token=abc"
    headers = {"Cookie": cookie} if cookie else {}
    factory = WebSocketClientFactory(
        url, origin=f"https://localhost:{env.port}" if origin == "same" else origin,
        protocols=protocols, headers=headers, reactor=reactor)
    factory.protocol = Browser
    factory.setProtocolOptions(maxMessagePayloadSize=0, maxFramePayloadSize=0)
    factory._batched_timer = _ReactorTimer(reactor)
    endpoint = wrapClientTLS(env.client_tls(), TCP4ClientEndpoint(reactor, "127.0.0.1", env.port))
    browser: Browser = await endpoint.connect(factory)
    try:
        return await browser.opened
    except Refused:
        await browser.closed
        raise


async def close(browser: Browser, code: int = 1000) -> int | None:
    browser.sendClose(code)
    return await browser.closed


@pytest_twisted.ensureDeferred
async def test_text_binary_and_1_mib_messages_round_trip_with_subprotocol(proxy_make: Any) -> None:
    env = await proxy_make()
    browser = await connect(env, await open_session(env), protocols=["other", "selkies"])
    assert browser.websocket_protocol_in_use == "selkies"
    seen = env.app.ws_requests[0]
    assert seen.headers["authorization"] == APP_AUTH
    assert seen.protocols == ["other", "selkies"]
    assert seen.path == f"/{env.session_id}/websockify" and seen.params == {"token": ["abc"]}
    browser.sendMessage("héllo".encode(), False)
    assert await browser.messages.get() == ("héllo".encode(), False)
    browser.sendMessage(b"\x00\xff\x01", True)
    assert await browser.messages.get() == (b"\x00\xff\x01", True)
    big = bytes(range(256)) * 4096
    browser.sendMessage(big, True)
    assert await browser.messages.get() == (big, True)
    assert await close(browser) == 1000
    await wait_for(lambda: env.app.ws_closes == [1000])


@pytest_twisted.ensureDeferred
async def test_no_subprotocol_offered_means_none_chosen(proxy_make: Any) -> None:
    env = await proxy_make()
    browser = await connect(env, await open_session(env))
    assert browser.websocket_protocol_in_use is None
    await close(browser)


@pytest_twisted.ensureDeferred
async def test_app_close_code_reaches_the_browser(proxy_make: Any) -> None:
    env = await proxy_make()
    browser = await connect(env, await open_session(env))
    browser.sendMessage(b"close:4001", False)
    assert await browser.closed == 4001


@pytest_twisted.ensureDeferred
async def test_browser_close_code_reaches_the_app(proxy_make: Any) -> None:
    env = await proxy_make()
    browser = await connect(env, await open_session(env))
    await close(browser, 4002)
    await wait_for(lambda: env.app.ws_closes == [4002])


@pytest_twisted.ensureDeferred
async def test_foreign_origin_is_refused_403(proxy_make: Any) -> None:
    env = await proxy_make()
    cookie = await open_session(env)
    with pytest.raises(Refused) as refused:
        await connect(env, cookie, origin="https://evil.example")
    assert refused.value.status == 403
    assert env.app.ws_requests == []


@pytest_twisted.ensureDeferred
async def test_no_cookie_is_refused(proxy_make: Any) -> None:
    env = await proxy_make()
    with pytest.raises(Refused) as refused:
        await connect(env, None)
    assert refused.value.status == 401
    other_cookie = await open_session(env, env.other_session_id)
    with pytest.raises(Refused):
        await connect(env, other_cookie)
    assert env.app.ws_requests == []


@pytest_twisted.ensureDeferred
async def test_session_end_closes_both_sides_with_1001(proxy_make: Any) -> None:
    env = await proxy_make()
    browser = await connect(env, await open_session(env))
    browser.sendMessage(b"ping", False)
    await browser.messages.get()
    assert env.root.ws.open_bridges(env.session_id) == 1
    env.directory.end(env.session_id)
    assert await browser.closed == 1001
    await wait_for(lambda: env.app.ws_closes == [1001])
    assert env.root.ws.open_bridges(env.session_id) == 0


@pytest_twisted.ensureDeferred
async def test_unreachable_app_refuses_the_upgrade_502(proxy_make: Any) -> None:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    env = await proxy_make(app_port=dead_port)
    with pytest.raises(Refused) as refused:
        await connect(env, await open_session(env))
    assert refused.value.status == 502


def test_acceleration_is_reported() -> None:
    found = acceleration()
    assert set(found) == {"utf8validator", "xormasker"}
    assert set(found.values()) <= {"nvx", "wsaccel", "python"}
