"""WebSocket bridging through the session port, with Autobahn's client over real TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import json
import pytest
import pytest_twisted
from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from autobahn.websocket.types import ConnectionRequest
from twisted.internet import task
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from sealskin.proxy.relay import PING_PAYLOAD
from sealskin.proxy.ws import WsLimits, _ReactorTimer, acceleration
from test_proxy_support import APP_AUTH, ProxyEnv, fetch, open_session, proxy_cert, proxy_make, reactor, wait_for

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
        self.frames: list[int] = []  # payload length of each data frame received
        self.pings: DeferredQueue[bytes] = DeferredQueue()
        self.close_reason: str | None = None

    def onMessageFrameBegin(self, length: int) -> None:
        self.frames.append(length)
        super().onMessageFrameBegin(length)

    def onPing(self, payload: bytes) -> None:
        self.pings.put(payload)
        super().onPing(payload)

    def onOpen(self) -> None:
        self.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.messages.put((payload, isBinary))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.close_reason = reason
        if not self.opened.called:
            line = getattr(self, "http_status_line", None) or "HTTP/1.1 0"
            self.opened.errback(Refused(int(line.split()[1])))
        self.closed.callback(code)


async def connect(env: ProxyEnv, cookie: str | None, *, origin: str | None = "same",
                  protocols: list[str] | None = None, session_id: str | None = None,
                  protocol: type[Browser] = Browser, **options: Any) -> Browser:
    """A browser over TLS; ``options`` are Autobahn protocol options (``maskClientFrames``...)."""
    sid = session_id or env.session_id
    url = f"wss://localhost:{env.port}/{sid}/websockify?token=abc"
    headers = {"Cookie": cookie} if cookie else {}
    factory = WebSocketClientFactory(
        url, origin=f"https://localhost:{env.port}" if origin == "same" else origin,
        protocols=protocols, headers=headers, reactor=reactor)
    factory.protocol = protocol
    factory.setProtocolOptions(maxMessagePayloadSize=0, maxFramePayloadSize=0, **options)
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
async def test_foreign_origin_refusal_says_why_in_json(proxy_make: Any) -> None:
    env = await proxy_make()
    cookie = await open_session(env)
    response, body = await fetch(env, b"GET", f"/{env.session_id}/websockify", {
        b"cookie": [cookie.encode()], b"origin": [b"https://evil.example"],
        b"upgrade": [b"websocket"], b"connection": [b"Upgrade"],
        b"sec-websocket-version": [b"13"], b"sec-websocket-key": [b"dGhlIHNhbXBsZSBub25jZQ=="]})
    assert response.code == 403
    assert json.loads(body) == {"detail": "Cross-origin WebSocket refused."}
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


@pytest.mark.parametrize("ending", ["session end", "shutdown"])
@pytest_twisted.ensureDeferred
async def test_session_end_closes_both_sides_with_1001(proxy_make: Any, ending: str) -> None:
    env = await proxy_make()
    browser = await connect(env, await open_session(env))
    browser.sendMessage(b"ping", False)
    await browser.messages.get()
    assert env.root.ws.open_bridges(env.session_id) == 1
    if ending == "shutdown":
        env.root.ws.close()
    else:
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


# -- the frame relay ---------------------------------------------------------------------------


class FramesWs(WebSocketServerProtocol):
    """An app that records the frames it gets and answers a few commands."""

    factory: FramesApp

    def onConnect(self, request: ConnectionRequest) -> str | None:
        self.factory.live.add(self)
        return "chat" if "chat" in request.protocols else None

    def onMessageFrameBegin(self, length: int) -> None:
        self.factory.frames.append(length)
        super().onMessageFrameBegin(length)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.factory.messages.append(payload)
        if payload == b"fragments":
            self.sendMessage(b"0123456789" * 30, False, fragmentSize=100)
        elif payload.startswith(b"close:"):
            self.sendClose(int(payload[6:]), "done \u00e9")
        elif payload.startswith(b"flood:"):
            self.factory.flood = Flood(self, int(payload[6:]))

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.factory.live.discard(self)
        self.factory.closes.append(code)


class FramesApp(WebSocketServerFactory):
    def __init__(self) -> None:
        super().__init__(reactor=reactor)
        self.protocol = FramesWs
        self.setProtocolOptions(maxMessagePayloadSize=0, maxFramePayloadSize=0)
        self._batched_timer = _ReactorTimer(reactor)
        self.live: set[FramesWs] = set()
        self.frames: list[int] = []
        self.messages: list[bytes] = []
        self.closes: list[int | None] = []
        self.flood: Flood | None = None
        self.port = 0


@implementer(IPushProducer)
class Flood:
    """Sends ``count`` 64 KiB binary messages as fast as the app's transport takes them."""

    CHUNK = bytes(range(256)) * 256

    def __init__(self, ws: FramesWs, count: int) -> None:
        self._ws, self._count = ws, count
        self._transport: Any = cast(Any, ws.transport)
        self.sent = 0
        self.paused = False
        self._transport.registerProducer(self, True)
        reactor.callLater(0, self._produce)

    def _produce(self) -> None:
        while not self.paused and self.sent < self._count:
            self.sent += 1
            self._ws.sendMessage(self.CHUNK, True)
        if self.sent >= self._count and not self.paused:
            self._transport.unregisterProducer()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._produce()

    def stopProducing(self) -> None:
        self.paused = True
        self._count = 0


@pytest_twisted.async_yield_fixture()
async def frames_app() -> AsyncIterator[FramesApp]:
    factory = FramesApp()
    listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
    factory.port = listening.getHost().port
    yield factory
    await listening.stopListening()
    for ws in list(factory.live):
        transport: Any = ws.transport
        transport.abortConnection()
    await wait_for(lambda: not factory.live)


class Deaf(Browser):
    """A browser that never answers pings."""

    def onPing(self, payload: bytes) -> None:
        self.pings.put(payload)


class Counting(Browser):
    """A browser that counts messages instead of keeping them."""

    count = 0
    received = 0

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.count += 1
        self.received += len(payload)


@pytest_twisted.ensureDeferred
async def test_fragments_and_close_code_and_reason_pass_as_they_are(proxy_make: Any,
                                                                     frames_app: FramesApp) -> None:
    env = await proxy_make(app_port=frames_app.port)
    browser = await connect(env, await open_session(env))
    browser.sendMessage(b"abcdefghij" * 25, True, fragmentSize=100)
    await wait_for(lambda: frames_app.messages == [b"abcdefghij" * 25])
    assert frames_app.frames == [100, 100, 50]
    browser.sendMessage(b"fragments", False)
    assert await browser.messages.get() == (b"0123456789" * 30, False)
    assert browser.frames == [100, 100, 100, 0]  # Autobahn ends an even split with an empty frame
    browser.sendMessage(b"close:4005", False)
    assert await browser.closed == 4005
    assert browser.close_reason == "done \u00e9"
    await wait_for(lambda: frames_app.closes == [1000])  # the browser's answer (Autobahn's: 1000)


@pytest_twisted.ensureDeferred
async def test_subprotocol_is_the_apps_choice_among_the_browsers_offers(
        proxy_make: Any, frames_app: FramesApp) -> None:
    env = await proxy_make(app_port=frames_app.port)
    cookie = await open_session(env)
    browser = await connect(env, cookie, protocols=["x-unknown", "chat"])
    assert browser.websocket_protocol_in_use == "chat"
    await close(browser)
    other = await connect(env, cookie, protocols=["x-unknown"])
    assert other.websocket_protocol_in_use is None
    await close(other)


@pytest_twisted.ensureDeferred
async def test_message_over_the_limit_across_fragments_closes_both_sides_1009(proxy_make: Any) -> None:
    env = await proxy_make(ws_limits=WsLimits(max_message_bytes=1000))
    browser = await connect(env, await open_session(env))
    browser.sendMessage(bytes(1000), True, fragmentSize=400)
    assert await browser.messages.get() == (bytes(1000), True)
    browser.sendMessage(bytes(1200), True, fragmentSize=400)
    assert await browser.closed == 1009
    await wait_for(lambda: env.app.ws_closes == [1009])


@pytest_twisted.ensureDeferred
async def test_an_unmasked_frame_from_the_browser_gets_1002(proxy_make: Any) -> None:
    env = await proxy_make()
    browser = await connect(env, await open_session(env), maskClientFrames=False)
    browser.sendMessage(b"naked", False)
    assert await browser.closed == 1002
    await wait_for(lambda: env.app.ws_closes == [1002])
    assert env.root.ws.open_bridges(env.session_id) == 0


@pytest_twisted.ensureDeferred
async def test_the_proxy_pings_an_idle_browser_and_notices_its_pong(proxy_make: Any) -> None:
    env = await proxy_make(ws_limits=WsLimits(auto_ping_interval_seconds=0.05,
                                              auto_ping_timeout_seconds=5))
    browser = await connect(env, await open_session(env))
    assert await browser.pings.get() == PING_PAYLOAD
    assert await browser.pings.get() == PING_PAYLOAD  # the next interval began with the pong
    browser.sendMessage(b"still here", False)
    assert await browser.messages.get() == (b"still here", False)
    assert await close(browser) == 1000


@pytest_twisted.ensureDeferred
async def test_a_browser_that_does_not_answer_pings_is_dropped(proxy_make: Any) -> None:
    env = await proxy_make(ws_limits=WsLimits(auto_ping_interval_seconds=0.05,
                                              auto_ping_timeout_seconds=0.1))
    browser = await connect(env, await open_session(env), protocol=Deaf)
    assert await browser.pings.get() == PING_PAYLOAD
    assert await browser.closed == 1006
    await wait_for(lambda: env.app.ws_closes == [1001])


@pytest_twisted.ensureDeferred
async def test_session_end_aborts_a_side_left_mid_frame(proxy_make: Any, frames_app: FramesApp) -> None:
    env = await proxy_make(app_port=frames_app.port, ws_limits=WsLimits(close_timeout_seconds=0.2))
    browser = await connect(env, await open_session(env))
    browser.beginMessage(isBinary=True)
    browser.beginMessageFrame(1000)
    browser.sendMessageFrameData(bytes(10))
    await wait_for(lambda: frames_app.frames == [1000])
    env.directory.end(env.session_id)
    assert await browser.closed == 1001  # its stream toward the browser was at a boundary
    await wait_for(lambda: frames_app.closes == [1006])  # the app's was not: aborted


@pytest_twisted.ensureDeferred
async def test_frames_touch_the_session(proxy_make: Any) -> None:
    env = await proxy_make()
    browser = await connect(env, await open_session(env))
    browser.sendMessage(b"hello", False)
    await browser.messages.get()
    assert env.directory.touched == [env.session_id]
    await close(browser)


@pytest_twisted.ensureDeferred
async def test_a_browser_that_stops_reading_pauses_the_app(proxy_make: Any, frames_app: FramesApp) -> None:
    count = 1024  # 64 MiB, far beyond what socket buffers hold between the app and the browser
    env = await proxy_make(app_port=frames_app.port)
    browser = await connect(env, await open_session(env), protocol=Counting)
    assert isinstance(browser, Counting)
    transport: Any = browser.transport
    transport.pauseProducing()
    browser.sendMessage(f"flood:{count}".encode(), False)
    await wait_for(lambda: frames_app.flood is not None and frames_app.flood.paused)
    flood = frames_app.flood
    assert flood is not None
    stalled = -1
    while stalled != flood.sent:  # no progress for 0.2 s: every buffer on the way is full
        stalled = flood.sent
        await task.deferLater(reactor, 0.2)
    assert flood.sent < count // 2
    transport.resumeProducing()
    await wait_for(lambda: browser.count == count, seconds=60)
    assert browser.received == count * len(Flood.CHUNK)
    await close(browser)


def test_acceleration_is_reported() -> None:
    found = acceleration()
    assert set(found) == {"utf8validator", "xormasker"}
    assert set(found.values()) <= {"nvx", "wsaccel", "python"}
