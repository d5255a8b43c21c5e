"""WebSocket frame headers (RFC 6455 5.2), read without touching payloads.

The WebSocket relay (:mod:`sealskin.proxy.relay`) forwards each direction's bytes verbatim.
A :class:`FrameScanner` per direction follows the frame boundaries in those bytes and applies
what can be decided from a header alone: masking (5.1: client frames masked, server frames
not), reserved opcodes and RSV bits (5.2), control-frame rules (5.5: final, at most 125
bytes; a close body is never 1 byte), fragmentation order (5.4) and size limits (a message
is the sum of its fragments). Payloads are neither unmasked nor UTF-8 validated here: the
endpoints do that, as they do behind any other reverse proxy.

Pure code, no reactor: also the frames the proxy writes itself (:func:`control_frame`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import attrs
from autobahn.websocket import xormasker

# nvx's compiled masker where Autobahn has it, else its Python one (see ws.acceleration)
_xor_masker: Callable[[bytes], Any] = getattr(xormasker, "create_xor_masker")
_INCOMPLETE, _STOPPED = -1, -2

CONTINUATION, TEXT, BINARY = 0x0, 0x1, 0x2
CLOSE, PING, PONG = 0x8, 0x9, 0xA
GOING_AWAY = 1001
PROTOCOL_ERROR = 1002
MESSAGE_TOO_BIG = 1009
BAD_GATEWAY = 1014  # RFC 6455 registry (11.7): a gateway got an invalid response upstream

_FIN = 0x80
_RSV = 0x70
_MASKED = 0x80
_MAX_CONTROL_BYTES = 125


@attrs.frozen
class Violation:
    """Why a direction was stopped: the close code to send (1002 or 1009) and a reason."""

    code: int
    reason: str


class FrameScanner:
    """Follows one direction of a WebSocket connection, frame header by frame header.

    ``masked``: whether frames in this direction must be masked (browser to app) or must not
    be (app to browser). ``max_message_bytes`` and ``max_frame_bytes`` bound payload sizes,
    0 meaning unlimited. ``allowed_rsv``: RSV bits an extension negotiated on the connection
    may set (``0x40`` for permessage-deflate's RSV1); any other RSV bit is a violation.
    """

    __slots__ = ("_mask_bit", "_max_message", "_max_frame", "_rsv_forbidden", "_held",
                 "_remaining", "_fragmented", "_message_bytes", "violation", "first_boundary",
                 "frames", "pongs", "closes")

    def __init__(self, *, masked: bool, max_message_bytes: int = 0, max_frame_bytes: int = 0,
                 allowed_rsv: int = 0) -> None:
        self._mask_bit = _MASKED if masked else 0
        self._max_message = max_message_bytes
        self._max_frame = max_frame_bytes
        self._rsv_forbidden = _RSV & ~allowed_rsv
        self._held = b""         # the start of a header not complete yet (at most 13 bytes)
        self._remaining = 0      # payload bytes of the current frame not seen yet
        self._fragmented = False  # inside a message whose final frame has not come
        self._message_bytes = 0
        self.violation: Violation | None = None
        #: offset, in what the last :meth:`feed` returned, of its first frame boundary; -1: none
        self.first_boundary = 0
        self.frames = 0  #: headers passed so far
        self.pongs = 0   #: pong frames passed so far
        self.closes = 0  #: close frames passed so far

    @property
    def at_boundary(self) -> bool:
        """True if everything returned so far ends with a whole frame.

        A frame can then be inserted into the forwarded stream (5.4: control frames may come
        between the fragments of a message).
        """
        return self._remaining == 0

    def feed(self, data: bytes) -> bytes:
        """Scans ``data``; returns the bytes to forward now, usually ``data`` itself.

        A header split across chunks is held back until it is complete, so a violation is
        found before any byte of the offending frame is returned: the stream returned so far
        then ends at a frame boundary, :attr:`violation` says why, and later feeds return
        nothing.
        """
        if self.violation is not None:
            return b""
        if self._held:
            data, self._held = self._held + data, b""
        n = len(data)
        pos = self._remaining
        self.first_boundary = pos if pos <= n else -1
        while pos < n:
            step = self._frame(data, pos, n)
            if step < 0:
                if step == _INCOMPLETE:
                    self._held = data[pos:]
                    self._remaining = 0
                return data[:pos]
            pos += step
        self._remaining = pos - n
        return data

    def _frame(self, data: bytes, pos: int, n: int) -> int:
        """Header plus payload size of the frame at ``pos``; ``_INCOMPLETE`` if its header
        is not all there, ``_STOPPED`` if it breaks a rule (see :attr:`violation`)."""
        if n - pos < 2:
            return _INCOMPLETE
        b0, b1 = data[pos], data[pos + 1]
        length, size = b1 & 0x7F, 2
        if length == 126:
            if n - pos < 4:
                return _INCOMPLETE
            length, size = (data[pos + 2] << 8) | data[pos + 3], 4
        elif length == 127:
            if n - pos < 10:
                return _INCOMPLETE
            length, size = struct.unpack_from("!Q", data, pos + 2)[0], 10
        if b1 & _MASKED:
            size += 4
        if n - pos < size:
            return _INCOMPLETE
        self.violation = self._check(b0, b1, length)
        return _STOPPED if self.violation is not None else size + length

    def _check(self, b0: int, b1: int, length: int) -> Violation | None:
        if b1 & _MASKED != self._mask_bit:
            return Violation(PROTOCOL_ERROR, "unmasked frame" if self._mask_bit else "masked frame")
        if b0 & self._rsv_forbidden:
            return Violation(PROTOCOL_ERROR, "RSV bit without an extension")
        if length >> 63:
            return Violation(PROTOCOL_ERROR, "64-bit length with its top bit set")
        self.frames += 1
        opcode = b0 & 0x0F
        if opcode >= CLOSE:
            return self._control(b0, opcode, length)
        return self._data(opcode, b0 & _FIN, length)

    def _control(self, b0: int, opcode: int, length: int) -> Violation | None:
        if opcode > PONG:
            return Violation(PROTOCOL_ERROR, f"reserved control opcode {opcode}")
        if not b0 & _FIN or length > _MAX_CONTROL_BYTES:
            return Violation(PROTOCOL_ERROR, "fragmented or oversized control frame")
        if opcode == PONG:
            self.pongs += 1
        elif opcode == CLOSE:
            if length == 1:
                return Violation(PROTOCOL_ERROR, "close frame with a 1-byte body")
            self.closes += 1
        return None

    def _data(self, opcode: int, fin: int, length: int) -> Violation | None:
        if opcode == CONTINUATION:
            if not self._fragmented:
                return Violation(PROTOCOL_ERROR, "continuation frame outside a message")
            self._message_bytes += length
        elif opcode <= BINARY:
            if self._fragmented:
                return Violation(PROTOCOL_ERROR, "new message inside a fragmented one")
            self._message_bytes = length
        else:
            return Violation(PROTOCOL_ERROR, f"reserved data opcode {opcode}")
        if self._max_frame and length > self._max_frame:
            return Violation(MESSAGE_TOO_BIG, "frame too big")
        if self._max_message and self._message_bytes > self._max_message:
            return Violation(MESSAGE_TOO_BIG, "message too big")
        self._fragmented = not fin
        return None


def control_frame(opcode: int, payload: bytes = b"", *, mask: bytes | None = None) -> bytes:
    """A final control frame; masked with the 4-byte ``mask`` (toward a server) if given.

    Masking uses Autobahn's XOR masker (its compiled ``nvx`` code where available).
    """
    if len(payload) > _MAX_CONTROL_BYTES:
        raise ValueError("control frame payloads are at most 125 bytes")
    if mask is None:
        return bytes((_FIN | opcode, len(payload))) + payload
    masked: bytes = _xor_masker(mask).process(payload)
    return bytes((_FIN | opcode, _MASKED | len(payload))) + mask + masked


def close_body(code: int, reason: str = "") -> bytes:
    """The body of a close frame (5.5.1): the code, then a UTF-8 reason cut to fit 125 bytes."""
    encoded = reason.encode("utf-8")[:_MAX_CONTROL_BYTES - 2]
    return struct.pack("!H", code) + encoded.decode("utf-8", "ignore").encode("utf-8")


__all__ = ["FrameScanner", "Violation", "control_frame", "close_body", "CLOSE", "PING", "PONG",
           "GOING_AWAY", "PROTOCOL_ERROR", "MESSAGE_TOO_BIG", "BAD_GATEWAY"]
