"""The AES-GCM envelope: round trips, tamper detection and hostile bodies."""

from __future__ import annotations

import base64
import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealskin.crypto import EnvelopeError, envelope

KEY = bytes(range(32))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
json_objects = st.dictionaries(st.text(), json_values, max_size=6)


def _refused(body: object) -> None:
    with pytest.raises(EnvelopeError) as caught:
        envelope.open_envelope(KEY, body)
    assert str(caught.value) == "Failed to decrypt request"


@given(st.binary(max_size=2048))
def test_any_bytes_round_trip(plaintext: bytes) -> None:
    sealed = envelope.seal(KEY, plaintext)
    iv, opened = envelope.open_envelope(KEY, sealed)
    assert opened == plaintext
    assert base64.b64decode(sealed["iv"]) == iv and len(iv) == 12


@given(json_objects)
def test_any_json_object_round_trips_through_the_wire_bytes(obj: dict[str, object]) -> None:
    body = envelope.seal_json(KEY, obj)
    assert envelope.open_json(KEY, json.loads(body))[1] == obj


@given(st.binary(max_size=256), st.data())
def test_any_single_bit_flip_is_rejected(plaintext: bytes, data: st.DataObject) -> None:
    sealed = envelope.seal(KEY, plaintext)
    member = data.draw(st.sampled_from(["iv", "ciphertext"]))
    raw = bytearray(base64.b64decode(sealed[member]))
    bit = data.draw(st.integers(0, len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    _refused({**sealed, member: base64.b64encode(bytes(raw)).decode()})


@given(st.text())
def test_arbitrary_text_as_envelope_raises_only_envelope_error(text: str) -> None:
    iv = "AAAAAAAAAAAAAAAA"  # twelve zero bytes
    for candidate in (text, {"iv": text, "ciphertext": text}, {"iv": iv, "ciphertext": text}):
        with pytest.raises(EnvelopeError):
            envelope.open_json(KEY, candidate)


@given(st.from_type(object) | json_values)
def test_arbitrary_values_as_envelope_raise_only_envelope_error(value: object) -> None:
    with pytest.raises(EnvelopeError):
        envelope.open_envelope(KEY, value)


def test_fresh_iv_each_time() -> None:
    assert envelope.seal(KEY, b"x")["iv"] != envelope.seal(KEY, b"x")["iv"]


def test_missing_padding_is_tolerated() -> None:
    sealed = envelope.seal(KEY, b"hello")
    unpadded = {k: v.rstrip("=") for k, v in sealed.items()}
    assert envelope.open_envelope(KEY, unpadded)[1] == b"hello"


@pytest.mark.parametrize("text", ["AAAA AAAA", "AAAA\nAAAA", "AA-_", "AAA*", "A", "AA==AA=="])
def test_strict_base64_refuses_non_alphabet_text(text: str) -> None:
    with pytest.raises(EnvelopeError):
        envelope.b64decode_strict(text)


@pytest.mark.parametrize("value", [None, 12, b"AAAA", ["AAAA"]])
def test_strict_base64_refuses_non_strings(value: object) -> None:
    with pytest.raises(EnvelopeError):
        envelope.b64decode_strict(value)


def test_wrong_shapes_are_refused() -> None:
    sealed = envelope.seal(KEY, b"{}")
    _refused({**sealed, "extra": "x"})
    _refused({"iv": sealed["iv"]})
    _refused({**sealed, "iv": 12})
    _refused([sealed["iv"], sealed["ciphertext"]])
    _refused({**sealed, "iv": base64.b64encode(os.urandom(16)).decode()})
    _refused({**sealed, "ciphertext": base64.b64encode(b"short").decode()})


def test_wrong_key_is_refused() -> None:
    with pytest.raises(EnvelopeError):
        envelope.open_envelope(os.urandom(32), envelope.seal(KEY, b"{}"))


@pytest.mark.parametrize(
    "plaintext", [b"[]", b'"x"', b"1", b"not json", b"\xff\xfe", b'{"a":NaN}', b"[" * 100000]
)
def test_non_object_plaintext_is_refused(plaintext: bytes) -> None:
    with pytest.raises(EnvelopeError):
        envelope.open_json(KEY, envelope.seal(KEY, plaintext))


def test_seal_json_is_compact_utf8() -> None:
    body = envelope.seal_json(KEY, {"a": "é", "b": [1, 2]})
    assert b" " not in body
    assert envelope.open_envelope(KEY, json.loads(body))[1] == '{"a":"é","b":[1,2]}'.encode()


def test_seal_refuses_a_wrong_iv_size() -> None:
    with pytest.raises(EnvelopeError):
        envelope.seal(KEY, b"x", iv=b"short")


def test_big_bodies_take_the_fast_parser_and_still_round_trip() -> None:
    import os

    from sealskin.crypto import envelope

    key = os.urandom(32)
    big = {"upload_id": "u", "chunk_index": 3, "chunk_data_b64": "QUJD" * 400_000}
    wire = envelope.seal_json(key, big)
    assert len(wire) > envelope.FAST_JSON_BYTES
    _, opened = envelope.open_json(key, json.loads(wire))
    assert opened == big


def test_big_bodies_are_sealed_as_the_same_compact_json() -> None:
    key = os.urandom(32)
    big = {"upload_id": "u", "chunk_index": 3, "chunk_data_b64": "QUJD" * 400_000}
    wire = envelope.seal_json(key, big)
    assert envelope.dumps_compact(json.loads(wire)) == wire
    assert envelope.open_json(key, json.loads(wire))[1] == big
