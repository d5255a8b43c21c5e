"""A small, fast WebSocket load client (RFC 6455) for bench/proxy_bench.py.

asyncio protocol callbacks (no streams), one event loop per process. Each connection sends
one pre-built frame over and over: the masking key is random per connection but fixed, so the
masked frame is computed once (the echo server unmasks every byte; a proxy in between need
not: SealSkin and Caddy forward frames as they are). Received frames are counted, never
copied, except pings (answered with their payload) and each connection's first echo, which is
compared with what was sent (``verified`` / ``mismatched`` in the output; a mismatch fails
the run). Each connection keeps ``window`` messages in flight: a new one is sent for each
echo received.

    ws_bench.py run  --url wss://127.0.0.1:P/<sid>/ws --header 'Cookie: ...' --conns 20 \\
                     --size 1024 --seconds 10 --procs 1      # prints one JSON line
    ws_bench.py hold --url ... --count 1000                  # prints "open N", holds until stdin closes
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import resource
import ssl
import struct
import sys
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

_CLOSE, _PING, _PONG = 0x8, 0x9, 0xA


def build_frame(payload: bytes, mask: bytes, binary: bool = True) -> bytes:
    n = len(payload)
    first = 0x80 | (0x2 if binary else 0x1)
    if n < 126:
        head = struct.pack("!BB", first, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")
    return head + mask + masked


def control_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    key = (mask * 32)[:len(payload)]
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + bytes(
        a ^ b for a, b in zip(payload, key))


class Stats:
    def __init__(self) -> None:
        self.messages = 0
        self.received_bytes = 0
        self.verified = 0
        self.mismatched = 0
        self.running = True


class Client(asyncio.Protocol):
    """One connection: handshake, then ``window`` messages in flight (or idle if window 0)."""

    def __init__(self, request: bytes, frame: bytes, expected: bytes, window: int, stats: Stats,
                 opened: asyncio.Future[None]) -> None:
        self._request = request
        self._frame = frame
        self._expected = expected
        self._echo: bytearray | None = bytearray() if window else None  # the first echo
        self._window = window
        self._stats = stats
        self._opened = opened
        self._open = False
        self._head = b""
        self._remaining = 0   # payload bytes left in the current frame
        self._control: bytearray | None = None  # payload of a ping being read
        self._opcode = 0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._opened.done():
            self._opened.set_exception(ConnectionError("closed during the handshake"))

    def data_received(self, data: bytes) -> None:
        if not self._open:
            data = self._handshake(data)
            if not self._open:
                return
        self._frames(data)

    def _handshake(self, data: bytes) -> bytes:
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            return b""
        status = self._head.split(b"\r\n", 1)[0]
        rest = self._head[end + 4:]
        self._head = b""
        if b" 101 " not in status + b" ":
            self._opened.set_exception(ConnectionError(status.decode("latin-1")))
            assert self.transport is not None
            self.transport.close()
            return b""
        self._open = True
        self._opened.set_result(None)
        if self._window:
            assert self.transport is not None
            self.transport.write(self._frame * self._window)
        return rest

    def _frames(self, data: bytes) -> None:
        pos, n = 0, len(data)
        if self._head:
            data, self._head = self._head + data, b""
            n = len(data)
        while pos < n:
            if self._remaining:
                take = min(self._remaining, n - pos)
                if self._control is not None:
                    self._control += data[pos:pos + take]
                elif self._echo is not None and self._opcode < 8:
                    self._echo += data[pos:pos + take]
                self._remaining -= take
                pos += take
                if not self._remaining:
                    self._frame_done()
                continue
            if n - pos < 2:
                self._head = data[pos:]
                return
            b0, b1 = data[pos], data[pos + 1]
            length, at = b1 & 0x7F, pos + 2
            if length == 126:
                if n - at < 2:
                    self._head = data[pos:]
                    return
                length, at = int.from_bytes(data[at:at + 2], "big"), at + 2
            elif length == 127:
                if n - at < 8:
                    self._head = data[pos:]
                    return
                length, at = int.from_bytes(data[at:at + 8], "big"), at + 8
            self._opcode = b0 & 0x0F
            self._control = bytearray() if self._opcode in (_PING, _CLOSE) else None
            if self._opcode < 8:
                self._stats.received_bytes += length
            self._fin = bool(b0 & 0x80)
            self._remaining = length
            pos = at
            if not length:
                self._frame_done()

    def _frame_done(self) -> None:
        assert self.transport is not None
        if self._opcode == _PING:
            self.transport.write(control_frame(_PONG, bytes(self._control or b"")))
        elif self._opcode == _CLOSE:
            self.transport.close()
        elif self._opcode < 8 and self._fin:
            self._stats.messages += 1
            if self._echo is not None:
                self._check_echo(bytes(self._echo))
            if self._window and self._stats.running:
                self.transport.write(self._frame)
        self._control = None


    def _check_echo(self, echo: bytes) -> None:
        self._echo = None
        if echo == self._expected:
            self._stats.verified += 1
        else:
            self._stats.mismatched += 1


def _request(url: str, headers: Sequence[str]) -> tuple[str, int, bool, bytes]:
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
             *headers]
    return parts.hostname or "127.0.0.1", port, secure, ("\r\n".join(lines) + "\r\n\r\n").encode()


def _tls() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the bench's own self-signed certificates
    return ctx


async def _connect(url: str, headers: Sequence[str], payload: bytes, window: int,
                   stats: Stats) -> Client:
    loop = asyncio.get_running_loop()
    host, port, secure, request = _request(url, headers)
    opened: asyncio.Future[None] = loop.create_future()
    _, proto = await loop.create_connection(
        lambda: Client(request, build_frame(payload, os.urandom(4)), payload, window, stats,
                       opened), host, port,
        ssl=_tls() if secure else None)
    await asyncio.wait_for(opened, 30)
    return proto


async def _run(url: str, headers: Sequence[str], conns: int, size: int, window: int,
               warmup: float, seconds: float) -> dict[str, float]:
    stats = Stats()
    payload = os.urandom(size)
    clients = await asyncio.gather(*[
        _connect(url, headers, payload, window, stats)
        for _ in range(conns)])
    await asyncio.sleep(warmup)
    m0, b0, c0, t0 = stats.messages, stats.received_bytes, _cpu(), time.perf_counter()
    await asyncio.sleep(seconds)
    m1, b1, c1, t1 = stats.messages, stats.received_bytes, _cpu(), time.perf_counter()
    stats.running = False
    for c in clients:
        if c.transport is not None:
            c.transport.write(control_frame(_CLOSE, struct.pack("!H", 1000)))
    await asyncio.sleep(0.3)
    for c in clients:
        if c.transport is not None:
            c.transport.abort()
    return {"messages": m1 - m0, "bytes": b1 - b0, "seconds": t1 - t0, "cpu": c1 - c0,
            "verified": stats.verified, "mismatched": stats.mismatched}


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _child(args: argparse.Namespace, conns: int, out: mp.Queue[dict[str, float]]) -> None:
    out.put(asyncio.run(_run(args.url, args.header, conns, args.size, args.window,
                             args.warmup, args.seconds)))


def run(args: argparse.Namespace) -> dict[str, float]:
    """Splits ``conns`` over ``procs`` processes; sums their counts and CPU."""
    queue: mp.Queue[dict[str, float]] = mp.Queue()
    shares = [args.conns // args.procs + (1 if i < args.conns % args.procs else 0)
              for i in range(args.procs)]
    procs = [mp.Process(target=_child, args=(args, n, queue)) for n in shares]
    for p in procs:
        p.start()
    results = [queue.get(timeout=args.warmup + args.seconds + 60) for _ in procs]
    for p in procs:
        p.join(10)
    seconds = max(r["seconds"] for r in results)
    mismatched = sum(r["mismatched"] for r in results)
    if mismatched:
        raise SystemExit(f"{mismatched} connection(s) got back something else than they sent")
    return {"verified": sum(r["verified"] for r in results),"msgs_per_s": sum(r["messages"] for r in results) / seconds,
            "mb_per_s": sum(r["bytes"] for r in results) / seconds / 1e6,
            "client_cpu_pct": 100 * sum(r["cpu"] for r in results) / seconds,
            "procs": args.procs, "conns": args.conns, "size": args.size, "window": args.window}


async def _hold(args: argparse.Namespace) -> None:
    stats = Stats()
    clients: list[Client] = []
    batch = 50  # the server's listen backlog is 50 (Twisted's default)
    for i in range(0, args.count, batch):
        clients += await asyncio.gather(*[
            _connect(args.url, args.header, b"", 0, stats)
            for _ in range(min(batch, args.count - i))])
    print(f"open {len(clients)}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for c in clients:
        if c.transport is not None:
            c.transport.abort()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("run", "hold"))
    p.add_argument("--url", required=True)
    p.add_argument("--header", action="append", default=[], help="'Name: value' (repeatable)")
    p.add_argument("--conns", type=int, default=20)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--window", type=int, default=4, help="messages in flight per connection")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--procs", type=int, default=1)
    p.add_argument("--count", type=int, default=1000, help="hold: connections to open")
    args = p.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.mode == "run":
        print(json.dumps(run(args)), flush=True)
    else:
        asyncio.run(_hold(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
