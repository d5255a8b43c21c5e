"""An incremental HTTP/1.1 response parser for the proxy's upstream connections (no Twisted).

The proxy relays each app response to the browser as it arrives, so it needs only the
head (status and header lines) and the body's framing, RFC 9112 section 6.3:

1. a response to ``HEAD``, any ``1xx``, ``204`` and ``304`` has no body (interim ``1xx``
   heads other than ``101`` are skipped: a final head follows on the same connection);
2. ``Transfer-Encoding`` ending in ``chunked``: chunks are decoded, trailers dropped;
   another coding: the body runs until the connection closes;
3. ``Content-Length``: exactly that many bytes (differing copies are an error);
4. otherwise: until the connection closes.

The connection may carry the next request only after case 1, 2 (chunked) or 3 completed
and the app did not say ``Connection: close`` (HTTP/1.0 answers are never reused).

Anything malformed raises :class:`UpstreamProtocolError`; the proxy then answers 502 (or
cuts a response already started) and closes the connection.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["ResponseParser", "ResponseSink", "UpstreamProtocolError"]

_NO_BODY_CODES = frozenset({204, 304})
_MAX_CHUNK_LINE_BYTES = 4096


class UpstreamProtocolError(Exception):
    """The app's answer is not HTTP/1.1 we can relay (the message is for the log)."""


class ResponseSink(Protocol):
    """Receives one response, in order: ``head``, any number of ``data``, then ``end``."""

    def head(self, code: int, phrase: bytes, headers: list[tuple[bytes, bytes]]) -> None: ...

    def data(self, chunk: bytes) -> None: ...

    def end(self) -> None: ...


def _head_end(buffer: bytes | bytearray) -> tuple[int, int] | None:
    """(end of the head's text, start of what follows) or None if incomplete."""
    crlf = buffer.find(b"\r\n\r\n")
    lf = buffer.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, crlf + 4
    if lf >= 0:
        return lf, lf + 2
    return None


def _status(line: bytes) -> tuple[bytes, int, bytes]:
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or len(parts[1]) != 3 or not parts[1].isdigit():
        raise UpstreamProtocolError("bad status line")
    return parts[0], int(parts[1]), parts[2] if len(parts) == 3 else b""


def _headers(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            raise UpstreamProtocolError("obsolete line folding")  # RFC 9112 5.2: reject
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise UpstreamProtocolError("bad header line")
        out.append((name, value.strip()))
    return out


def _tokens(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [token.strip().lower() for key, value in headers if key.lower() == name
            for token in value.split(b",") if token.strip()]


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    values = {token for token in _tokens(headers, b"content-length")}
    if not values:
        return None
    if len(values) > 1 or not next(iter(values)).isdigit():
        raise UpstreamProtocolError("bad Content-Length")
    return int(next(iter(values)))


class ResponseParser:
    """Parses one response (see the module doc); make a new one per request.

    ``feed`` the bytes as they arrive and ``connection_lost`` when the connection ends.
    After ``end`` was called, ``keep_alive`` tells whether the connection may be reused
    and ``leftover`` holds bytes that followed the response (the app must not send any).
    """

    def __init__(self, sink: ResponseSink, *, head_request: bool, max_head_bytes: int = 65536) -> None:
        self._sink = sink
        self._head_request = head_request
        self._max_head_bytes = max_head_bytes
        self._buffer = bytearray()
        self._state = "head"
        self._remaining = 0  # bytes left in a Content-Length body or the current chunk
        self.keep_alive = False
        self.got_bytes = False
        self.done = False
        self.leftover = b""

    def feed(self, data: bytes) -> None:
        """Raises :class:`UpstreamProtocolError` for a malformed response."""
        if data:
            self.got_bytes = True
        if self.done:
            self.leftover += data
            return
        if self._state == "length" and not self._buffer:
            self._feed_length(data)  # the common case: body bytes pass without copies
            return
        self._buffer += data
        while not self.done and self._buffer and self._step():
            pass

    def connection_lost(self) -> bool:
        """True if the close ended the response properly (a close-delimited body)."""
        if self.done:
            return True
        if self._state == "close":
            self._finish(False)
            return True
        return False

    def _step(self) -> bool:
        """Advances one state on the buffer; False when more bytes are needed."""
        if self._state == "head":
            return self._parse_head()
        if self._state == "length":
            data, self._buffer = bytes(self._buffer), bytearray()
            self._feed_length(data)
            return False
        if self._state == "close":
            data, self._buffer = bytes(self._buffer), bytearray()
            self._sink.data(data)
            return False
        return self._step_chunked()

    def _parse_head(self) -> bool:
        found = _head_end(self._buffer)
        if found is None:
            if len(self._buffer) > self._max_head_bytes:
                raise UpstreamProtocolError("response head too large")
            return False
        text_end, body_start = found
        if text_end > self._max_head_bytes:
            raise UpstreamProtocolError("response head too large")
        lines = bytes(self._buffer[:text_end]).replace(b"\r\n", b"\n").split(b"\n")
        del self._buffer[:body_start]
        version, code, phrase = _status(lines[0])
        if 100 <= code < 200:
            if code == 101:
                raise UpstreamProtocolError("unexpected protocol switch")
            return True  # interim answer: the final head follows
        headers = _headers(lines[1:])
        self._frame(version, code, headers)
        self._sink.head(code, phrase, headers)
        if self._state == "none":
            self._finish(True)
        return True

    def _frame(self, version: bytes, code: int, headers: list[tuple[bytes, bytes]]) -> None:
        reusable = version == b"HTTP/1.1" and b"close" not in _tokens(headers, b"connection")
        codings = _tokens(headers, b"transfer-encoding")
        if self._head_request or code in _NO_BODY_CODES:
            self._state, self.keep_alive = "none", reusable
        elif codings:
            chunked = codings[-1] == b"chunked"
            self._state, self.keep_alive = ("size" if chunked else "close"), reusable and chunked
        else:
            length = _content_length(headers)
            if length is None:
                self._state = "close"
            else:
                self._state, self._remaining, self.keep_alive = "length", length, reusable
                if length == 0:
                    self._state = "none"

    def _feed_length(self, data: bytes) -> None:
        if len(data) < self._remaining:
            self._remaining -= len(data)
            self._sink.data(data)
            return
        body, rest = data[:self._remaining], data[self._remaining:]
        self._remaining = 0
        if body:
            self._sink.data(body)
        self._finish(True)
        self.leftover = rest

    def _step_chunked(self) -> bool:
        if self._state == "size":
            return self._chunk_size()
        if self._state == "data":
            take = min(self._remaining, len(self._buffer))
            chunk = bytes(self._buffer[:take])
            del self._buffer[:take]
            self._remaining -= take
            self._sink.data(chunk)
            if self._remaining == 0:
                self._state = "data-end"
            return take > 0
        line = self._line()
        if line is None:
            return False
        if self._state == "data-end":
            if line:
                raise UpstreamProtocolError("chunk not followed by CRLF")
            self._state = "size"
        elif not line:  # "trailers": an empty line ends the message
            self._finish(True)
        return True

    def _chunk_size(self) -> bool:
        line = self._line()
        if line is None:
            return False
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise UpstreamProtocolError("bad chunk size") from None
        if size < 0 or not size_text.isalnum():
            raise UpstreamProtocolError("bad chunk size")
        self._state, self._remaining = ("trailers", 0) if size == 0 else ("data", size)
        return True

    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\n")
        if end < 0:
            if len(self._buffer) > _MAX_CHUNK_LINE_BYTES:
                raise UpstreamProtocolError("chunk line too long")
            return None
        line = bytes(self._buffer[:end]).rstrip(b"\r")
        del self._buffer[:end + 1]
        return line

    def _finish(self, framed: bool) -> None:
        self.done = True
        if not framed:
            self.keep_alive = False
        self.leftover = bytes(self._buffer)
        self._buffer = bytearray()
        self._sink.end()
