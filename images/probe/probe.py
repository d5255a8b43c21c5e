"""sealskin-probe: a small app that behaves like a SealSkin app image, for tests.

Python 3 standard library only (asyncio). It serves under ``$SUBFOLDER`` on port 3000,
requires HTTP Basic auth with ``$CUSTOM_USER``/``$PASSWORD`` (upstream-protocol 6.3, 6.8) and
offers, under the prefix::

    GET  <prefix>             HTML page containing the word sealskin-probe
    GET  <prefix>headers      JSON of the request headers (lower-cased; repeats as lists)
    GET  <prefix>bytes?n=N    N bytes, streamed; byte i is i % 256
    POST <prefix>sha256       {"sha256": hex, "length": n} of the (streamed) body
    GET  <prefix>env          SEALSKIN_* and PUID, PGID, TZ, SUBFOLDER, LC_ALL
    GET  <prefix>files?path=P listing of a directory under /config
    GET  <prefix>ws           WebSocket echo (RFC 6455)

The parsing and framing functions are pure so tests can import this file directly;
``python3 probe.py --port 0`` runs it outside a container.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import signal
import stat
import struct
import sys
import urllib.parse
from dataclasses import dataclass, field
from typing import AsyncIterator, Mapping, Sequence

MAX_HEAD_BYTES = 64 * 1024
MAX_WS_MESSAGE_BYTES = 64 * 1024 * 1024
STREAM_CHUNK_BYTES = 64 * 1024
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
ENV_NAMES = frozenset({"PUID", "PGID", "TZ", "SUBFOLDER", "LC_ALL"})
PATTERN = bytes(range(256)) * (STREAM_CHUNK_BYTES // 256)

REASONS = {
    100: "Continue", 101: "Switching Protocols", 200: "OK", 400: "Bad Request",
    401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
    413: "Payload Too Large", 426: "Upgrade Required", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented",
}

PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>sealskin-probe</title></head>
<body><h1>sealskin-probe</h1><p>SealSkin test application.</p></body></html>
"""


# --- configuration -------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    prefix: str
    user: str
    password: str
    config_root: str
    host: str
    port: int
    puid: int
    pgid: int
    keep_user: bool = False


def normalise_prefix(subfolder: str) -> str:
    """``sid`` / ``/sid`` / ``/sid/`` -> ``/sid/``; empty -> ``/``."""
    inner = subfolder.strip().strip("/")
    return "/" + inner + "/" if inner else "/"


def settings_from(env: Mapping[str, str], argv: Sequence[str]) -> Settings:
    parser = argparse.ArgumentParser(prog="probe.py", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--config-root", default="/config")
    parser.add_argument("--keep-user", action="store_true",
                        help="stay the starting user even when root (local runs, tests)")
    args = parser.parse_args(list(argv))
    return Settings(
        prefix=normalise_prefix(env.get("SUBFOLDER", "/")),
        user=env.get("CUSTOM_USER", ""),
        password=env.get("PASSWORD", ""),
        config_root=os.path.realpath(args.config_root),
        host=args.host,
        port=args.port,
        puid=int(env.get("PUID") or 1000),
        pgid=int(env.get("PGID") or 1000),
        keep_user=args.keep_user,
    )


def visible_env(env: Mapping[str, str]) -> dict[str, str]:
    """The variables /env shows: never PASSWORD or CUSTOM_USER."""
    return {k: v for k, v in sorted(env.items()) if k.startswith("SEALSKIN_") or k in ENV_NAMES}


# --- HTTP parsing --------------------------------------------------------------------------


class HttpError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass
class Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.target).query))

    def header(self, name: str) -> str | None:
        """All values of ``name`` joined with ``, `` (RFC 9110 5.3), or None."""
        values = [v for k, v in self.headers if k == name]
        return ", ".join(values) if values else None

    def tokens(self, name: str) -> list[str]:
        value = self.header(name) or ""
        return [t.strip().lower() for t in value.split(",") if t.strip()]

    @property
    def keep_alive(self) -> bool:
        connection = self.tokens("connection")
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection

    def headers_json(self) -> dict[str, str | list[str]]:
        out: dict[str, str | list[str]] = {}
        for name, value in self.headers:
            if name not in out:
                out[name] = value
            elif isinstance(out[name], list):
                out[name].append(value)  # type: ignore[union-attr]
            else:
                out[name] = [out[name], value]  # type: ignore[list-item]
        return out


def parse_head(head: bytes) -> Request:
    """Parse a request line and header block (without the final blank line)."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError as exc:  # pragma: no cover - latin-1 decodes anything
        raise HttpError(400, "undecodable head") from exc
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "bad request line")
    method, target, version = parts
    request = Request(method=method, target=target, version=version)
    for line in lines[1:]:
        if not line:
            continue
        if line[0] in " \t":
            raise HttpError(400, "obsolete header folding")
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, "bad header line")
        request.headers.append((name.lower(), value.strip(" \t")))
    return request


def body_length(request: Request) -> int | None:
    """Content length, or None for a chunked body. Raises HttpError 400/501."""
    codings = request.tokens("transfer-encoding")
    if codings:
        if codings != ["chunked"]:
            raise HttpError(501, "only chunked transfer-coding is supported")
        return None
    value = request.header("content-length")
    if value is None:
        return 0
    lengths = {v.strip() for v in value.split(",")}
    if len(lengths) != 1 or not next(iter(lengths)).isdigit():
        raise HttpError(400, "bad content-length")
    return int(lengths.pop())


def check_basic_auth(header: str | None, user: str, password: str) -> bool:
    if not header or not user:
        return False
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except ValueError:
        return False
    expected = f"{user}:{password}".encode()
    return hmac.compare_digest(given, expected)


class Body:
    """Streams one request body from ``reader``: Content-Length or chunked."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 request: Request) -> None:
        self._reader = reader
        self._writer = writer
        self._length = body_length(request)
        self._continue = "100-continue" in request.tokens("expect")
        self.done = self._length == 0

    async def chunks(self) -> AsyncIterator[bytes]:
        if self.done:
            return
        if self._continue:
            self._continue = False
            self._writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self._length is None:
            async for chunk in self._chunked():
                yield chunk
        else:
            left = self._length
            while left:
                data = await self._reader.read(min(left, STREAM_CHUNK_BYTES))
                if not data:
                    raise ConnectionError("body ended early")
                left -= len(data)
                yield data
        self.done = True

    async def _chunked(self) -> AsyncIterator[bytes]:
        while True:
            size_line = await self._reader.readuntil(b"\r\n")
            size_text = size_line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError as exc:
                raise HttpError(400, "bad chunk size") from exc
            if size == 0:
                while await self._reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailers are ignored
                return
            left = size
            while left:
                data = await self._reader.read(min(left, STREAM_CHUNK_BYTES))
                if not data:
                    raise ConnectionError("chunk ended early")
                left -= len(data)
                yield data
            if await self._reader.readexactly(2) != b"\r\n":
                raise HttpError(400, "bad chunk end")

    async def drain(self) -> None:
        async for _ in self.chunks():
            pass


def response_head(status: int, headers: Sequence[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# --- WebSocket framing (RFC 6455) ------------------------------------------------------------

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def ws_accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + WS_GUID).digest()).decode()


def ws_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None) -> bytes:
    """Encode one frame; servers send unmasked frames, clients pass a 4-byte ``mask``."""
    first = (0x80 if fin else 0) | opcode
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", first, mask_bit | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if mask:
        return head + mask + apply_mask(payload, mask)
    return head + payload


def apply_mask(data: bytes, mask: bytes) -> bytes:
    if not data:
        return data
    key = int.from_bytes((mask * (len(data) // 4 + 1))[: len(data)], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(len(data), "big")


class WsProtocolError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


async def ws_read_frame(reader: asyncio.StreamReader, *, require_mask: bool = True
                        ) -> tuple[bool, int, bytes]:
    """Read one frame: (fin, opcode, unmasked payload)."""
    b0, b1 = await reader.readexactly(2)
    if b0 & 0x70:
        raise WsProtocolError(1002, "reserved bits set")
    fin, opcode, masked, n = bool(b0 & 0x80), b0 & 0x0F, bool(b1 & 0x80), b1 & 0x7F
    if require_mask and not masked:
        raise WsProtocolError(1002, "client frames must be masked")
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    if opcode >= 0x8 and (n > 125 or not fin):
        raise WsProtocolError(1002, "bad control frame")
    if n > MAX_WS_MESSAGE_BYTES:
        raise WsProtocolError(1009, "frame too big")
    mask = await reader.readexactly(4) if masked else b""
    payload = await reader.readexactly(n)
    return fin, opcode, apply_mask(payload, mask) if masked else payload


async def ws_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo messages (reassembled) until a close frame, which is echoed with its code."""
    message_op: int | None = None
    parts: list[bytes] = []
    size = 0
    try:
        while True:
            fin, opcode, payload = await ws_read_frame(reader)
            if opcode == OP_PING:
                writer.write(ws_frame(OP_PONG, payload))
            elif opcode == OP_PONG:
                pass
            elif opcode == OP_CLOSE:
                writer.write(ws_frame(OP_CLOSE, payload[:2]))
                await writer.drain()
                return
            elif opcode in (OP_TEXT, OP_BINARY, OP_CONT):
                if (opcode == OP_CONT) != (message_op is not None):
                    raise WsProtocolError(1002, "unexpected continuation state")
                if message_op is None:
                    message_op = opcode
                parts.append(payload)
                size += len(payload)
                if size > MAX_WS_MESSAGE_BYTES:
                    raise WsProtocolError(1009, "message too big")
                if fin:
                    message = b"".join(parts)
                    if message_op == OP_TEXT:
                        try:
                            message.decode("utf-8")
                        except UnicodeDecodeError as exc:
                            raise WsProtocolError(1007, "invalid UTF-8") from exc
                    writer.write(ws_frame(message_op, message))
                    message_op, parts, size = None, [], 0
            else:
                raise WsProtocolError(1002, "unknown opcode")
            await writer.drain()
    except WsProtocolError as exc:
        writer.write(ws_frame(OP_CLOSE, struct.pack("!H", exc.code) + str(exc).encode()))
        await writer.drain()


# --- the application -------------------------------------------------------------------------


class Probe:
    def __init__(self, settings: Settings, env: Mapping[str, str]) -> None:
        self.settings = settings
        self._env = visible_env(env)
        self._connections: set[asyncio.Task[None]] = set()

    async def serve(self, stop: asyncio.Event, ready: asyncio.Future[int] | None = None) -> None:
        server = await asyncio.start_server(self._connection, self.settings.host,
                                            self.settings.port, limit=MAX_HEAD_BYTES)
        port = server.sockets[0].getsockname()[1]
        print(f"sealskin-probe listening on {self.settings.host}:{port} "
              f"under {self.settings.prefix}", file=sys.stderr, flush=True)
        if ready is not None:
            ready.set_result(port)
        async with server:
            await stop.wait()
            server.close()
            for task in list(self._connections):
                task.cancel()
            if self._connections:
                await asyncio.wait(self._connections, timeout=0.5)

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _one_request(self, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> bool:
        """Serve one request; True when the connection may carry another."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        except asyncio.LimitOverrunError:
            writer.write(response_head(431, [("Content-Length", "0"), ("Connection", "close")]))
            return False
        try:
            request = parse_head(head[:-4])
            body = Body(reader, writer, request)
        except HttpError as exc:
            await self._send(writer, exc.status, exc.detail.encode(), "text/plain", close=True)
            return False
        try:
            upgraded = await self._route(request, body, reader, writer)
        except HttpError as exc:
            await self._send(writer, exc.status, exc.detail.encode(), "text/plain", close=True)
            return False
        if upgraded:
            return False
        if not body.done:
            await body.drain()
        await writer.drain()
        return request.keep_alive

    async def _route(self, request: Request, body: Body, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> bool:
        """Dispatch; True when the connection was taken over (WebSocket)."""
        s = self.settings
        close = not request.keep_alive
        head_only = request.method == "HEAD"
        if not check_basic_auth(request.header("authorization"), s.user, s.password):
            await self._send(writer, 401, b"authentication required\n", "text/plain", close=close,
                             extra=[("WWW-Authenticate", 'Basic realm="sealskin-probe"')])
            return False
        path = request.path
        if not path.startswith(s.prefix):
            await self._send(writer, 404, b"not found\n", "text/plain", close=close)
            return False
        name = path[len(s.prefix):]
        method = "GET" if head_only else request.method
        allowed = {"": "GET", "headers": "GET", "bytes": "GET", "env": "GET", "files": "GET",
                   "ws": "GET", "sha256": "POST"}
        if name not in allowed:
            await self._send(writer, 404, b"not found\n", "text/plain", close=close)
            return False
        if method != allowed[name]:
            await self._send(writer, 405, b"method not allowed\n", "text/plain", close=close,
                             extra=[("Allow", allowed[name])])
            return False
        if name == "ws":
            return await self._websocket(request, reader, writer)
        if name == "":
            await self._send(writer, 200, PAGE, "text/html; charset=utf-8", close=close,
                             head_only=head_only)
        elif name == "headers":
            await self._json(writer, request.headers_json(), close, head_only)
        elif name == "env":
            await self._json(writer, self._env, close, head_only)
        elif name == "files":
            await self._json(writer, list_directory(s.config_root, request.query.get("path", "")),
                             close, head_only)
        elif name == "bytes":
            await self._bytes(writer, request, close, head_only)
        else:
            digest, length = hashlib.sha256(), 0
            async for chunk in body.chunks():
                digest.update(chunk)
                length += len(chunk)
            await self._json(writer, {"sha256": digest.hexdigest(), "length": length}, close, False)
        return False

    async def _bytes(self, writer: asyncio.StreamWriter, request: Request, close: bool,
                     head_only: bool) -> None:
        text = request.query.get("n", "")
        if not text.isdigit():
            raise HttpError(400, "n must be a non-negative integer")
        n = int(text)
        writer.write(response_head(200, [("Content-Type", "application/octet-stream"),
                                         ("Content-Length", str(n)),
                                         *self._common(close)]))
        if head_only:
            return
        left = n
        while left:
            piece = PATTERN[: min(left, len(PATTERN))]
            writer.write(piece)
            left -= len(piece)
            await writer.drain()

    async def _websocket(self, request: Request, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> bool:
        key = request.header("sec-websocket-key")
        if "websocket" not in request.tokens("upgrade") or "upgrade" not in request.tokens(
                "connection") or not key:
            await self._send(writer, 400, b"websocket upgrade expected\n", "text/plain",
                             close=True)
            return True
        if request.header("sec-websocket-version") != "13":
            await self._send(writer, 426, b"", "text/plain", close=True,
                             extra=[("Sec-WebSocket-Version", "13")])
            return True
        headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                   ("Sec-WebSocket-Accept", ws_accept(key))]
        offered = request.tokens("sec-websocket-protocol")
        if offered:
            original = [t.strip() for t in (request.header("sec-websocket-protocol") or "")
                        .split(",") if t.strip()]
            headers.append(("Sec-WebSocket-Protocol", original[0]))
        writer.write(response_head(101, headers))
        await writer.drain()
        await ws_echo(reader, writer)
        return True

    @staticmethod
    def _common(close: bool) -> list[tuple[str, str]]:
        return [("Cache-Control", "no-store"), ("Server", "sealskin-probe"),
                ("Connection", "close" if close else "keep-alive")]

    async def _json(self, writer: asyncio.StreamWriter, value: object, close: bool,
                    head_only: bool) -> None:
        data = json.dumps(value, indent=1, sort_keys=True).encode() + b"\n"
        await self._send(writer, 200, data, "application/json", close=close, head_only=head_only)

    async def _send(self, writer: asyncio.StreamWriter, status: int, data: bytes,
                    content_type: str, *, close: bool, head_only: bool = False,
                    extra: Sequence[tuple[str, str]] = ()) -> None:
        headers = [("Content-Type", content_type), ("Content-Length", str(len(data))),
                   *extra, *self._common(close)]
        writer.write(response_head(status, headers) + (b"" if head_only else data))
        await writer.drain()


def list_directory(root: str, requested: str) -> dict[str, object]:
    """List a directory under ``root``; ``requested`` is relative or starts with /config."""
    relative = requested
    if relative == "/config" or relative.startswith("/config/"):
        relative = relative[len("/config"):]
    target = os.path.realpath(os.path.join(root, relative.lstrip("/")))
    if target != root and not target.startswith(root + os.sep):
        raise HttpError(400, "path escapes /config")
    shown = "/config" + target[len(root):]
    try:
        names = sorted(os.listdir(target))
    except FileNotFoundError:
        return {"path": shown, "exists": False, "entries": []}
    except NotADirectoryError as exc:
        raise HttpError(400, "not a directory") from exc
    except PermissionError as exc:
        raise HttpError(400, "permission denied") from exc
    entries = []
    for name in names:
        try:
            st = os.lstat(os.path.join(target, name))
        except OSError:
            continue
        kind = ("dir" if stat.S_ISDIR(st.st_mode) else "file" if stat.S_ISREG(st.st_mode)
                else "link" if stat.S_ISLNK(st.st_mode) else "other")
        entries.append({"name": name, "type": kind, "size": st.st_size,
                        "mode": oct(stat.S_IMODE(st.st_mode))})
    return {"path": shown, "exists": True, "entries": entries}


def drop_privileges(puid: int, pgid: int) -> None:
    """Become PUID/PGID when started as root (as linuxserver images run their apps)."""
    if os.getuid() != 0:
        return
    os.setgroups([])
    os.setgid(pgid)
    os.setuid(puid)
    os.environ["HOME"] = "/config"


async def main_async(settings: Settings, env: Mapping[str, str]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await Probe(settings, env).serve(stop)


def main(argv: Sequence[str] | None = None) -> None:
    settings = settings_from(os.environ, sys.argv[1:] if argv is None else argv)
    if not settings.keep_user:
        drop_privileges(settings.puid, settings.pgid)
    asyncio.run(main_async(settings, dict(os.environ)))


if __name__ == "__main__":
    main()
