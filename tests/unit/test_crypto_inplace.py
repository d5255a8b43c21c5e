"""Big envelopes opened in their own buffer give exactly what the ordinary path gives."""

from __future__ import annotations

import base64
import json
import os

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealskin.crypto import CryptoError, EnvelopeError, envelope, inplace

KEY = bytes(range(32))
MEMBER = "chunk_data_b64"
SMALL = {"block_bytes": 8, "member_bytes": 4}  # block edges and spills at test sizes


def ordinary(wire: bytes) -> object:
    """What the edge got before: orjson, then open_json; None for a refusal."""
    try:
        return envelope.open_json(KEY, orjson.loads(wire))[1]
    except (ValueError, CryptoError):
        return None


def in_place(wire: bytes, **sizes: int) -> object:
    """open_in_place, with the big member shown as its decoded bytes; None for a refusal."""
    try:
        _, obj = inplace.open_in_place(KEY, bytearray(wire), MEMBER, **(sizes or SMALL))
    except EnvelopeError:
        return None
    text = obj.get(MEMBER)
    if isinstance(text, inplace.Base64Text):
        return {**obj, MEMBER: bytes(text.decode())}
    return obj


def same(wire: bytes, **sizes: int) -> None:
    """Both ways agree (the big member compared by its decoded bytes)."""
    want, got = ordinary(wire), in_place(wire, **sizes)
    if isinstance(got, dict) and isinstance(got.get(MEMBER), bytes):
        assert isinstance(want, dict)
        assert got[MEMBER] == envelope.b64decode_strict(want[MEMBER])
        want, got = {**want, MEMBER: None}, {**got, MEMBER: None}
    assert got == want


def compact(plaintext: bytes, iv: bytes = b"\x01" * 12) -> bytes:
    """The envelope the extension sends (upstream-protocol 2.9)."""
    return envelope.dumps_compact(envelope.seal(KEY, plaintext, iv=iv))


b64_texts = st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode())
member_values = (b64_texts | b64_texts.map(lambda t: t.rstrip("="))
                 | st.text(alphabet="AQgw+/=\\\"x\n", max_size=24) | st.integers())
others = st.dictionaries(st.sampled_from(["upload_id", "chunk_index", "a", MEMBER]),
                         st.text(max_size=8) | st.integers() | st.lists(st.integers()),
                         max_size=3)


@given(others, member_values, st.booleans())
def test_any_compact_body_opens_as_the_ordinary_path_opens_it(
        rest: dict[str, object], value: object, first: bool) -> None:
    obj = {MEMBER: value, **rest} if first else {**rest, MEMBER: value}
    same(compact(json.dumps(obj, separators=(",", ":")).encode()))


@given(st.binary(max_size=64), st.integers(min_value=0, max_value=200), st.binary(max_size=3))
def test_any_edit_of_the_wire_text_is_refused_or_opened_alike(
        plaintext: bytes, at: int, edit: bytes) -> None:
    wire = compact(plaintext)
    at %= len(wire)
    same(wire[:at] + edit + wire[at + len(edit):])
    same(wire[:at] + edit + wire[at:])


@pytest.mark.parametrize("wire", [
    b'{"iv": "AQEBAQEBAQEBAQEB", "ciphertext": "AAAA"}',  # spaced: the ordinary way
    b'{"ciphertext":"AAAA","iv":"AQEBAQEBAQEBAQEB"}',
    b'{"iv":"AQEBAQEBAQEBAQEB","ciphertext":"AA\\/A"}',  # an escape: the ordinary way
    b'{"iv":"AQEBAQEBAQEBAQEB","ciphertext":"AAAA","iv":"AQEBAQEBAQEBAQEB"}',
    b'{"iv":"AQEBAQEBAQEBAQEB","ciphertext":"AA==AAAA"}',  # padding inside
    b'{"iv":"AQEBAQEBAQEBAQEB","ciphertext":"AAAAAA=="}',
    b'{"iv":"AQEBAQEBAQEBAQEB","ciphertext":""}', b'{"iv":"","ciphertext":"AAAA"}',
    b' {"iv":"AQEBAQEBAQEBAQEB","ciphertext":"AAAA"}', b'{"iv":"\xff","ciphertext":"AAAA"}',
])
def test_odd_envelopes_are_refused_alike(wire: bytes) -> None:
    assert in_place(wire) is None and ordinary(wire) is None


@pytest.mark.parametrize("plaintext", [
    b'{"a":{"chunk_data_b64":"QUJDRA=="}}',  # not the top-level member
    b'{"a":"\\"chunk_data_b64\\":\\"QUJDRA==","b":1}',  # inside a string
    b'["chunk_data_b64",{"chunk_data_b64":"QUJDRA=="}]',
    b'{"chunk_data_b64":"QUJDRA==","chunk_data_b64":""}',  # the last of duplicates wins
    b'{"chunk_data_b64":"QUJDRA==","chunk\\u005fdata_b64":"QUI="}',
    b'{"chunk_data_b64":"","chunk_data_b64":"QUJDRA=="}', b'{"a":"x\\"y","chunk_data_b64":"QUI="}',
    b'{"chunk_data_b64":"QUJDRA==", "a":"chunk_data_b64"}', b'{"a":"chunk_data_b64":"QUJD"}',
    b'{"chunk_data_b64":"QUJDRA","x":NaN}', b'{"chunk_data_b64":"QUJDRA",}',
    b'{"chunk_data_b64":"QUJDRA=="} x', b'{"chunk_data_b64":"QUJD\x01A=="}',
    b'{"chunk_data_b64":"QUJDRA==","n":123456789012345678901234567890}',
    b'{"u":"\xc3\xa9","chunk_data_b64":"QUJDRA==="}', b'{"chunk_data_b64":"QU\xc3\xa9JD"}',
])
def test_odd_plaintexts_open_alike(plaintext: bytes) -> None:
    same(compact(plaintext))


def test_a_big_chunk_is_left_in_the_buffer_and_decoded_there() -> None:
    chunk = os.urandom(3 * 1024 * 1024 + 1)
    body = {"upload_id": "u", "chunk_index": 2, MEMBER: base64.b64encode(chunk).decode()}
    wire = envelope.seal_json(KEY, body)
    buf = bytearray(wire)
    iv, obj = inplace.open_in_place(KEY, buf, MEMBER)
    text = obj[MEMBER]
    assert isinstance(text, inplace.Base64Text) and len(text) == len(body[MEMBER])
    assert {"upload_id": "u", "chunk_index": 2} == {k: v for k, v in obj.items() if k != MEMBER}
    decoded = text.decode()
    assert decoded.obj is buf and decoded == chunk  # no copy of the chunk was made
    assert text.decode() is decoded
    assert iv == envelope.open_json(KEY, json.loads(wire))[0]


@pytest.mark.parametrize("tail", [b',"n":123456789012345678901234567890}', b',"u":"\\ud800"}',
                                  b',"n":NaN}', b',"chunk_data_b64":""}', b'}'])
def test_big_plaintexts_open_alike(tail: bytes) -> None:
    # big: the ordinary path parses with orjson (big integers as floats, no lone surrogates)
    same(compact(b'{"chunk_data_b64":"' + b"QUJD" * 300_000 + b'"' + tail),
         block_bytes=inplace.BLOCK_BYTES)


def test_small_members_and_other_routes_get_strings() -> None:
    wire = envelope.seal_json(KEY, {MEMBER: "QUJD" * 300_000})
    _, obj = inplace.open_in_place(KEY, bytearray(wire), None)  # no member named
    assert obj == {MEMBER: "QUJD" * 300_000}
    short = compact(b'{"chunk_data_b64":"QUJD"}')
    assert inplace.open_in_place(KEY, bytearray(short), MEMBER)[1] == {MEMBER: "QUJD"}


def test_a_wrong_tag_is_refused() -> None:
    wire = bytearray(envelope.seal_json(KEY, {MEMBER: "QUJD" * 300_000}))
    wire[-4] = ord("A") if wire[-4] != ord("A") else ord("B")
    with pytest.raises(EnvelopeError):
        inplace.open_in_place(KEY, wire, MEMBER)
