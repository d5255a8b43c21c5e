"""The relay's frame-header scanner and the frames the proxy writes (no reactor)."""

from __future__ import annotations

import struct

import pytest
from autobahn.websocket.xormasker import create_xor_masker
from hypothesis import given
from hypothesis import strategies as st

from sealskin.proxy.frames import (
    CLOSE,
    MESSAGE_TOO_BIG,
    PING,
    PONG,
    PROTOCOL_ERROR,
    FrameScanner,
    close_body,
    control_frame,
)

MASK = b"\x01\x02\x03\x04"


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, masked: bool = True,
          rsv: int = 0, length: int | None = None) -> bytes:
    """A frame as an endpoint writes it (the payload is not masked: the scanner never looks)."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | rsv | opcode
    bit = 0x80 if masked else 0
    if n < 126:
        head = bytes((b0, bit | n))
    elif n < 65536:
        head = bytes((b0, bit | 126)) + struct.pack("!H", n)
    else:
        head = bytes((b0, bit | 127)) + struct.pack("!Q", n)
    return head + (MASK if masked else b"") + payload


def browser() -> FrameScanner:
    return FrameScanner(masked=True, max_message_bytes=1000)


def test_whole_frames_are_returned_as_they_came() -> None:
    data = frame(1, b"hello") + frame(2, bytes(300)) + frame(2, bytes(70000))
    scanner = FrameScanner(masked=True)
    assert scanner.feed(data) is data
    assert scanner.frames == 3 and scanner.at_boundary and scanner.violation is None


def test_a_split_header_is_held_until_complete() -> None:
    data = frame(2, bytes(300))
    scanner = browser()
    assert scanner.feed(data[:3]) == b""
    assert scanner.at_boundary  # nothing of the frame went out yet
    assert scanner.feed(data[3:10]) == data[:10]
    assert not scanner.at_boundary
    assert scanner.feed(data[10:]) == data[10:]
    assert scanner.at_boundary


def test_first_boundary_is_where_a_frame_may_be_inserted() -> None:
    one, two = frame(2, bytes(100)), frame(2, bytes(50))
    scanner = browser()
    scanner.feed(one[:40])
    assert scanner.first_boundary == 0
    out = scanner.feed(one[40:] + two[:20])
    assert scanner.first_boundary == len(one) - 40
    assert out[scanner.first_boundary:] == two[:20]
    scanner.feed(two[20:30])
    assert scanner.first_boundary == -1
    scanner.feed(two[30:])
    assert scanner.first_boundary == len(two) - 30


@pytest.mark.parametrize(("masked", "data"), [
    (True, frame(2, b"x", masked=False)),     # RFC 6455 5.1: client frames are masked
    (False, frame(2, b"x", masked=True)),     # ... server frames are not
    (True, frame(3, b"x")),                   # reserved data opcode
    (True, frame(0xB, b"x")),                 # reserved control opcode
    (True, frame(PING, bytes(126))),          # control frames carry at most 125 bytes
    (True, frame(PING, b"x", fin=False)),     # ... and are never fragmented
    (True, frame(2, b"x", rsv=0x40)),         # RSV1 with no extension negotiated
    (True, frame(0, b"x")),                   # continuation outside a message
    (True, frame(2, b"x", fin=False) + frame(1, b"y")),  # new message inside one
    (True, frame(CLOSE, b"\x03")),            # a close body is a code, 2 bytes at least
    (True, bytes((0x82, 0xFF)) + struct.pack("!Q", 1 << 63) + MASK),  # top length bit
])
def test_protocol_violations_are_found_in_the_header(masked: bool, data: bytes) -> None:
    scanner = FrameScanner(masked=masked)
    out = scanner.feed(data)
    assert scanner.violation is not None and scanner.violation.code == PROTOCOL_ERROR
    assert data.startswith(out) and len(out) < len(data)
    assert scanner.at_boundary
    assert scanner.feed(frame(2, b"later", masked=masked)) == b""


def test_an_extension_may_allow_rsv1() -> None:
    data = frame(2, b"x", rsv=0x40)
    scanner = FrameScanner(masked=True, allowed_rsv=0x40)
    assert scanner.feed(data) == data and scanner.violation is None


def test_a_message_over_the_limit_across_fragments_is_stopped_before_its_frame() -> None:
    first, second = frame(2, bytes(400), fin=False), frame(0, bytes(400), fin=False)
    third = frame(0, bytes(400))
    scanner = browser()
    assert scanner.feed(first + second + third) == first + second
    assert scanner.violation is not None and scanner.violation.code == MESSAGE_TOO_BIG
    assert scanner.at_boundary


def test_the_limit_counts_each_message_afresh() -> None:
    data = frame(2, bytes(600)) + frame(2, bytes(600)) + frame(1, bytes(500), fin=False) + frame(0, bytes(500))
    scanner = browser()
    assert scanner.feed(data) == data and scanner.violation is None


def test_a_frame_over_the_frame_limit_is_stopped() -> None:
    scanner = FrameScanner(masked=False, max_frame_bytes=100)
    scanner.feed(frame(2, bytes(101), masked=False))
    assert scanner.violation is not None and scanner.violation.code == MESSAGE_TOO_BIG


def test_control_frames_between_fragments_pass_and_are_counted() -> None:
    data = (frame(1, b"he", fin=False) + frame(PING, b"p") + frame(PONG, b"q")
            + frame(0, b"llo") + frame(CLOSE, struct.pack("!H", 1000)))
    scanner = browser()
    assert scanner.feed(data) == data
    assert (scanner.frames, scanner.pongs, scanner.closes) == (5, 1, 1)


def test_control_frame_unmasked_and_masked() -> None:
    assert control_frame(PING, b"abc") == b"\x89\x03abc"
    body = close_body(1001, "bye")
    masked = control_frame(CLOSE, body, mask=MASK)
    assert masked[:2] == bytes((0x88, 0x80 | len(body))) and masked[2:6] == MASK
    assert create_xor_masker(MASK).process(masked[6:]) == body
    scanner = browser()
    assert scanner.feed(masked) == masked and scanner.closes == 1


def test_close_body_fits_a_control_frame_and_keeps_utf8_whole() -> None:
    body = close_body(1001, "é" * 100)
    assert len(body) <= 125 and body[:2] == b"\x03\xe9"
    body[2:].decode("utf-8")
    with pytest.raises(ValueError):
        control_frame(PING, bytes(126))


# -- property: where a stream is cut does not change what the scanner sees -------------------

_frames = st.lists(st.tuples(st.sampled_from([1, 2, PING, PONG]),
                             st.sampled_from([0, 1, 5, 125, 126, 300, 65535, 65536])),
                   min_size=1, max_size=12)


def _stream(specs: list[tuple[int, int]]) -> tuple[bytes, list[int]]:
    """Valid masked frames and the offsets of every frame boundary (0 included)."""
    data, boundaries = b"", [0]
    for opcode, size in specs:
        data += frame(opcode, bytes(min(size, 125) if opcode >= CLOSE else size))
        boundaries.append(len(data))
    return data, boundaries


@given(_frames, st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=20))
def test_any_split_gives_the_same_frame_boundaries(specs: list[tuple[int, int]],
                                                   cuts: list[int]) -> None:
    data, boundaries = _stream(specs)
    points = sorted({c % (len(data) + 1) for c in cuts} | {len(data)})
    scanner, sent, at = FrameScanner(masked=True), b"", 0
    for point in points:
        before = len(sent)
        sent += scanner.feed(data[at:point])
        at = point
        inside = [b for b in boundaries if before <= b <= len(sent)]
        assert scanner.at_boundary == (len(sent) in boundaries)
        assert scanner.first_boundary == (inside[0] - before if inside else -1)
        assert point - len(sent) <= 13  # only a header's start is ever held back
    assert sent == data
    assert scanner.frames == len(specs) and scanner.violation is None


@given(_frames, st.integers(min_value=0), st.lists(st.integers(min_value=0, max_value=1 << 20),
                                                   max_size=20))
def test_any_split_stops_at_the_same_bad_frame(specs: list[tuple[int, int]], where: int,
                                               cuts: list[int]) -> None:
    good, boundaries = _stream(specs)
    bad_at = boundaries[where % len(boundaries)]
    data = good[:bad_at] + frame(2, b"unmasked", masked=False) + good[bad_at:]
    scanner, sent, at = FrameScanner(masked=True), b"", 0
    for point in sorted({c % (len(data) + 1) for c in cuts} | {len(data)}):
        sent += scanner.feed(data[at:point])
        at = point
    assert sent == data[:bad_at]
    assert scanner.violation is not None and scanner.violation.code == PROTOCOL_ERROR
