"""Streaming, backpressure, upstream failures, keep-alive and session end of the HTTP proxy."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.web.client import FileBodyProducer, ResponseDone
from twisted.web.http_headers import Headers

from sealskin.proxy.http import HttpLimits
from test_proxy_support import APP_AUTH, fetch, open_session, pattern_bytes, proxy_cert, proxy_make, reactor, wait_for

__all__ = ["proxy_cert", "proxy_make"]

MIB = 1024 * 1024
BIG = 64 * MIB


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class RssPeak:
    """Samples this process' RSS every 20 ms (all parties share the process: the proxy,
    the app, which spools uploads to a temp file, and the client, which generates and
    hashes on the fly). Growth far below the body size means nobody held the body."""

    def __init__(self) -> None:
        self.base = rss_bytes()
        self.peak = self.base
        self._loop = task.LoopingCall(self._sample)
        self._loop.clock = reactor
        self._loop.start(0.02)

    def _sample(self) -> None:
        self.peak = max(self.peak, rss_bytes())

    def stop(self) -> int:
        self._sample()
        self._loop.stop()
        return self.peak - self.base


class PatternFile:
    """A seekable file of ``total`` pattern bytes, generated on read."""

    def __init__(self, total: int) -> None:
        self.total, self.pos = total, 0

    def read(self, size: int = -1) -> bytes:
        size = self.total - self.pos if size < 0 else min(size, self.total - self.pos)
        data = pattern_bytes(self.pos, size)
        self.pos += size
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = {0: offset, 1: self.pos + offset, 2: self.total + offset}[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:
        pass


def pattern_sha256(total: int) -> str:
    digest = hashlib.sha256()
    for offset in range(0, total, 65536):
        digest.update(pattern_bytes(offset, min(65536, total - offset)))
    return digest.hexdigest()


class Hasher(Protocol):
    def __init__(self, paused: bool = False) -> None:
        self.digest = hashlib.sha256()
        self.received = 0
        self.done: Deferred[None] = Deferred()
        self._start_paused = paused

    def connectionMade(self) -> None:
        if self._start_paused:
            self.transport.pauseProducing()

    def dataReceived(self, data: bytes) -> None:
        self.digest.update(data)
        self.received += len(data)

    def connectionLost(self, reason: Any = None) -> None:
        if reason is None or reason.check(ResponseDone):
            self.done.callback(None)
        else:
            self.done.errback(reason)


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_64_mib_upload_streams_without_holding_the_body(proxy_make: Any) -> None:
    env = await proxy_make()
    cookie = {b"cookie": [(await open_session(env)).encode()]}
    peak = RssPeak()
    started = time.monotonic()
    try:
        producer = FileBodyProducer(PatternFile(BIG), readSize=65536)
        response, body = await fetch(env, b"PUT", f"/{env.session_id}/upload", cookie, producer=producer)
    finally:
        growth = peak.stop()
    seconds = time.monotonic() - started
    print(f"upload 64 MiB: {seconds:.2f}s, {BIG / MIB / seconds:.0f} MiB/s, RSS growth {growth / MIB:.1f} MiB")
    assert response.code == 200
    seen = json.loads(body)
    assert seen["body_len"] == BIG and seen["body_sha256"] == pattern_sha256(BIG)
    assert seen["headers"]["content-length"] == [str(BIG)]
    assert env.root.http.streamed_uploads == 1
    assert growth < 32 * MIB


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_chunked_upload_streams_as_chunked(proxy_make: Any) -> None:
    env = await proxy_make()
    cookie = {b"cookie": [(await open_session(env)).encode()]}
    file = PatternFile(3 * MIB)
    producer = FileBodyProducer(file, readSize=65536)
    producer.length = -1  # UNKNOWN_LENGTH is a sentinel object; force chunked below
    from twisted.web.iweb import UNKNOWN_LENGTH
    producer.length = UNKNOWN_LENGTH
    response, body = await fetch(env, b"POST", f"/{env.session_id}/upload", cookie, producer=producer)
    seen = json.loads(body)
    assert response.code == 200 and seen["body_len"] == 3 * MIB
    assert seen["headers"]["transfer-encoding"] == ["chunked"]


@pytest.mark.slow
@pytest_twisted.ensureDeferred
async def test_64_mib_download_streams_without_holding_the_body(proxy_make: Any) -> None:
    env = await proxy_make()
    cookie = await open_session(env)
    peak = RssPeak()
    started = time.monotonic()
    try:
        response = await env.agent.request(b"GET", env.url(f"/{env.session_id}/big?n={BIG}"),
                                           Headers({b"cookie": [cookie.encode()]}))
        hasher = Hasher()
        response.deliverBody(hasher)
        await hasher.done
    finally:
        growth = peak.stop()
    seconds = time.monotonic() - started
    print(f"download 64 MiB: {seconds:.2f}s, {BIG / MIB / seconds:.0f} MiB/s, RSS growth {growth / MIB:.1f} MiB")
    assert response.code == 200
    assert hasher.received == BIG and hasher.digest.hexdigest() == pattern_sha256(BIG)
    assert growth < 32 * MIB


class SlowReader(Protocol):
    """A raw TLS client that sends one request and then stops reading from its socket."""

    def __init__(self, request: bytes) -> None:
        self._request = request
        self.received = 0
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self._request)

    def dataReceived(self, data: bytes) -> None:
        self.received += len(data)
        self.transport.pauseProducing()

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(None)


@pytest_twisted.ensureDeferred
async def test_slow_reader_pauses_the_app_instead_of_buffering(proxy_make: Any) -> None:
    env = await proxy_make()
    cookie = await open_session(env)
    head = (f"GET /{env.session_id}/big?n={BIG} HTTP/1.1\r\nHost: localhost:{env.port}\r\n"
            f"Cookie: {cookie}\r\n\r\n").encode()
    endpoint = wrapClientTLS(env.client_tls(), TCP4ClientEndpoint(reactor, "127.0.0.1", env.port))
    reader = SlowReader(head)
    await endpoint.connect(_Once(reader))
    await wait_for(lambda: env.app.download_pauses > 0)
    await task.deferLater(reactor, 0.5)
    sent_when_full = env.app.download_sent
    await task.deferLater(reactor, 0.5)
    print(f"slow reader: app sent {env.app.download_sent / MIB:.1f} MiB, client read "
          f"{reader.received / MIB:.1f} MiB, app paused {env.app.download_pauses}x")
    # Kernel socket buffers on loopback hold a few MiB per hop; the proxy holds none of it.
    assert env.app.download_sent < 16 * MIB
    assert env.app.download_sent == sent_when_full  # every buffer on the way is full: paused
    assert env.root.http.in_flight(env.session_id) == 1
    reader.transport.abortConnection()  # the client gives up
    await reader.lost
    await wait_for(lambda: env.root.http.in_flight(env.session_id) == 0)


class _Once(ClientFactory):
    def __init__(self, protocol: Protocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: Any) -> Protocol:
        return self._protocol


@pytest_twisted.ensureDeferred
async def test_unreachable_app_is_502(proxy_make: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    env = await proxy_make(app_port=dead_port)
    cookie = {b"cookie": [(await open_session(env)).encode()]}
    response, body = await fetch(env, b"GET", f"/{env.session_id}/echo", cookie)
    assert response.code == 502 and json.loads(body)["detail"]
    response, body = await fetch(env, b"POST", f"/{env.session_id}/echo", cookie, b"x" * 200_000)
    assert response.code == 502


@pytest_twisted.ensureDeferred
async def test_app_that_does_not_answer_in_time_is_504(proxy_make: Any) -> None:
    env = await proxy_make(http_limits=HttpLimits(response_timeout_seconds=0.3))
    cookie = {b"cookie": [(await open_session(env)).encode()]}
    response, body = await fetch(env, b"GET", f"/{env.session_id}/slow", cookie)
    assert response.code == 504 and json.loads(body)["detail"]
    assert env.root.http.in_flight(env.session_id) == 0


@pytest_twisted.ensureDeferred
async def test_sequential_requests_reuse_one_upstream_connection(proxy_make: Any) -> None:
    env = await proxy_make()
    cookie = {b"cookie": [(await open_session(env)).encode()]}
    for i in range(5):
        response, _ = await fetch(env, b"GET", f"/{env.session_id}/echo?i={i}", cookie)
        assert response.code == 200
    response, _ = await fetch(env, b"POST", f"/{env.session_id}/echo", cookie, b"y" * 300_000)
    assert response.code == 200
    assert env.app_factory.connections_made == 1


@pytest_twisted.ensureDeferred
async def test_session_end_aborts_in_flight_responses(proxy_make: Any) -> None:
    env = await proxy_make()
    cookie = await open_session(env)
    response = await env.agent.request(b"GET", env.url(f"/{env.session_id}/big?n={BIG}"),
                                       Headers({b"cookie": [cookie.encode()]}))
    hasher = Hasher(paused=True)
    response.deliverBody(hasher)
    await wait_for(lambda: env.app.download_pauses > 0)
    env.directory.end(env.session_id)
    with pytest.raises(Exception):
        await hasher.done
    assert env.root.http.in_flight(env.session_id) == 0


@pytest_twisted.ensureDeferred
async def test_session_end_answers_a_waiting_request_503(proxy_make: Any) -> None:
    env = await proxy_make()
    cookie = {b"cookie": [(await open_session(env)).encode()]}
    pending = Deferred.fromCoroutine(fetch(env, b"GET", f"/{env.session_id}/slow", cookie))
    await wait_for(lambda: len(env.app.held) == 1)
    env.directory.end(env.session_id)
    response, body = await pending
    assert response.code == 503 and json.loads(body)["detail"]


class ScriptedApp(Protocol):
    """A raw HTTP app: answers each request head with the next scripted bytes; a script of
    ``b"CLOSE"`` closes the connection after answering the previous request (stale reuse)."""

    def __init__(self, factory: ScriptedFactory) -> None:
        self._factory = factory
        self._buffer = b""

    def connectionMade(self) -> None:
        self._factory.connections.append(self)

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\r\n\r\n" in self._buffer:
            head, _, self._buffer = self._buffer.partition(b"\r\n\r\n")
            self._factory.heads.append(head)
            answer = self._factory.script.pop(0)
            self.transport.write(answer)
            if self._factory.script and self._factory.script[0] == b"CLOSE":
                self._factory.script.pop(0)
                self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self._factory.connections.remove(self)


class ScriptedFactory(ClientFactory):
    def __init__(self, script: list[bytes]) -> None:
        self.script = script
        self.heads: list[bytes] = []
        self.connections: list[ScriptedApp] = []
        self.port = 0

    def buildProtocol(self, addr: Any) -> Protocol:
        return ScriptedApp(self)


async def scripted(proxy_make: Any, script: list[bytes]) -> tuple[Any, ScriptedFactory, dict[bytes, list[bytes]]]:
    app = ScriptedFactory(script)
    port = reactor.listenTCP(0, app, interface="127.0.0.1")
    app.port = port.getHost().port
    env = await proxy_make(app_port=port.getHost().port)
    env._ports.append(port)
    cookie = {b"cookie": [(await open_session(env)).encode()]}
    return env, app, cookie


OK_2 = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest_twisted.ensureDeferred
async def test_a_pooled_connection_the_app_closed_is_retried_on_a_fresh_one(proxy_make: Any) -> None:
    env, app, cookie = await scripted(proxy_make, [OK_2, b"CLOSE", OK_2])
    for _ in range(2):
        response, body = await fetch(env, b"GET", f"/{env.session_id}/x", cookie)
        assert (response.code, body) == (200, b"ok")
    assert env.root.http.pool.dialled == 2


@pytest_twisted.ensureDeferred
async def test_chunked_and_close_delimited_answers_are_relayed_whole(proxy_make: Any) -> None:
    env, app, cookie = await scripted(proxy_make, [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", b"CLOSE",
        OK_2,
    ])
    for expected in (b"abcde", b"until the end", b"ok"):
        response, body = await fetch(env, b"GET", f"/{env.session_id}/x", cookie)
        assert (response.code, body) == (200, expected)
    assert env.root.http.pool.dialled == 2  # the close-delimited answer's connection was not reused


@pytest_twisted.ensureDeferred
async def test_a_malformed_app_answer_is_502_and_its_connection_dropped(proxy_make: Any) -> None:
    env, app, cookie = await scripted(proxy_make, [b"HTTP/1.1 2xx Broken\r\n\r\n", OK_2])
    response, body = await fetch(env, b"GET", f"/{env.session_id}/x", cookie)
    assert response.code == 502 and json.loads(body)["detail"]
    response, body = await fetch(env, b"GET", f"/{env.session_id}/x", cookie)
    assert (response.code, body) == (200, b"ok")
    assert env.root.http.pool.dialled == 2


@pytest_twisted.ensureDeferred
async def test_the_upstream_head_carries_our_headers_only(proxy_make: Any) -> None:
    env, app, cookie = await scripted(proxy_make, [OK_2])
    headers = {**cookie, b"x-forwarded-for": [b"6.6.6.6"], b"connection": [b"x-drop"],
               b"x-drop": [b"1"], b"authorization": [b"Basic forged"], b"x-keep": [b"yes"]}
    cookie_line = cookie[b"cookie"][0] + b"; app=1"
    headers[b"cookie"] = [cookie_line]
    response, _ = await fetch(env, b"POST", f"/{env.session_id}/x?a=1&access_token=zzz", headers, b"")
    assert response.code == 200
    lines = app.heads[0].split(b"\r\n")
    assert lines[0] == f"POST /{env.session_id}/x?a=1 HTTP/1.1".encode()
    found = {}
    for line in lines[1:]:
        name, _, value = line.partition(b": ")
        found.setdefault(name.lower(), []).append(value)
    assert found[b"x-forwarded-for"] == [b"127.0.0.1"]
    assert found[b"authorization"] == [APP_AUTH.encode()]
    assert found[b"cookie"] == [b"app=1"] and found[b"x-keep"] == [b"yes"]
    assert b"x-drop" not in found and b"connection" not in found
    assert found[b"host"] == [f"127.0.0.1:{app.port}".encode()]
