"""The proxy's HTTP/1.1 response parser: framing (RFC 9112 6.3), reuse, malformed answers."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from sealskin.proxy.http1 import ResponseParser, UpstreamProtocolError


class Recorder:
    def __init__(self) -> None:
        self.heads: list[tuple[int, bytes, list[tuple[bytes, bytes]]]] = []
        self.body = b""
        self.ended = 0

    def head(self, code: int, phrase: bytes, headers: list[tuple[bytes, bytes]]) -> None:
        self.heads.append((code, phrase, headers))

    def data(self, chunk: bytes) -> None:
        assert self.heads and not self.ended, "data outside a response"
        self.body += chunk

    def end(self) -> None:
        self.ended += 1


def parse(raw: bytes, *, head_request: bool = False, pieces: list[int] | None = None) -> tuple[Recorder, ResponseParser]:
    sink = Recorder()
    parser = ResponseParser(sink, head_request=head_request)
    cuts = sorted(set(pieces or []))
    start = 0
    for cut in [*cuts, len(raw)]:
        parser.feed(raw[start:cut])
        start = cut
    return sink, parser


CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n"
           b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\nTrailer: x\r\n\r\n")


def test_content_length_body_ends_the_response_and_allows_reuse() -> None:
    sink, parser = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: app\r\n\r\nhello")
    assert sink.heads == [(200, b"OK", [(b"Content-Length", b"5"), (b"Server", b"app")])]
    assert sink.body == b"hello" and sink.ended == 1
    assert parser.done and parser.keep_alive and parser.leftover == b""


def test_chunked_body_is_decoded_and_trailers_dropped() -> None:
    sink, parser = parse(CHUNKED)
    assert sink.body == b"hello world!" and sink.ended == 1 and parser.keep_alive


@given(st.lists(st.integers(min_value=0, max_value=len(CHUNKED)), max_size=12))
def test_any_split_of_the_stream_gives_the_same_response(cuts: list[int]) -> None:
    sink, parser = parse(CHUNKED, pieces=cuts)
    assert sink.body == b"hello world!" and sink.ended == 1 and parser.keep_alive
    assert [h[0] for h in sink.heads] == [200]


@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0, max_value=3100), max_size=8))
def test_content_length_bodies_survive_any_split(body: bytes, cuts: list[int]) -> None:
    raw = b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    sink, parser = parse(raw, pieces=[c for c in cuts if c <= len(raw)])
    assert sink.body == body and sink.ended == 1 and parser.keep_alive


def test_body_without_length_runs_until_close_and_is_not_reused() -> None:
    sink, parser = parse(b"HTTP/1.1 200 OK\r\n\r\nsome bytes")
    assert sink.body == b"some bytes" and sink.ended == 0
    assert parser.connection_lost() and sink.ended == 1 and not parser.keep_alive


def test_a_close_in_the_middle_of_a_framed_body_is_not_an_end() -> None:
    sink, parser = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
    assert not parser.connection_lost() and sink.ended == 0


@pytest.mark.parametrize("raw, head_request", [
    (b"HTTP/1.1 204 No Content\r\n\r\n", False),
    (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n", False),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", True),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False),
])
def test_answers_without_a_body_end_at_their_head(raw: bytes, head_request: bool) -> None:
    sink, parser = parse(raw, head_request=head_request)
    assert sink.ended == 1 and sink.body == b"" and parser.keep_alive


def test_interim_answers_are_skipped() -> None:
    sink, _ = parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n"
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert [h[0] for h in sink.heads] == [200] and sink.body == b"ok"


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok",
])
def test_connections_the_app_will_not_keep_are_not_reused(raw: bytes) -> None:
    _, parser = parse(raw)
    parser.connection_lost()
    assert not parser.keep_alive


def test_bytes_after_the_response_are_kept_as_leftover() -> None:
    _, parser = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA")
    assert parser.leftover == b"EXTRA"


def test_lf_only_lines_are_accepted() -> None:
    sink, _ = parse(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")
    assert sink.body == b"ok" and sink.heads[0][2] == [(b"Content-Length", b"2")]


@pytest.mark.parametrize("raw", [
    b"HTTP/2 200 OK\r\n\r\n",
    b"HTTP/1.1 20 OK\r\n\r\n",
    b"garbage\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n",
])
def test_malformed_answers_are_refused(raw: bytes) -> None:
    with pytest.raises(UpstreamProtocolError):
        parse(raw)


def test_an_endless_head_is_refused() -> None:
    parser = ResponseParser(Recorder(), head_request=False, max_head_bytes=1024)
    with pytest.raises(UpstreamProtocolError):
        parser.feed(b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 200)
