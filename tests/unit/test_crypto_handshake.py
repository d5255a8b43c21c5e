"""The handshake: our server side against our client side, and every refusal."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from sealskin.crypto import HandshakeError, handshake, keys

KEY = keys.generate_rsa(2048)
PUBLIC = KEY.public_key()
OTHER_PUBLIC = keys.generate_rsa(2048).public_key()
OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _unwrap_refused(value: object) -> None:
    with pytest.raises(HandshakeError) as caught:
        handshake.unwrap_session_key(KEY, value)
    assert str(caught.value) == "Failed to decrypt session key"


def test_initiate_verifies_on_the_client() -> None:
    body = handshake.initiate(KEY)
    assert set(body) == {"nonce", "signature"}
    assert body["nonce"].endswith("=")  # standard padded base64 of 32 bytes
    handshake.verify_initiate(PUBLIC, body)


def test_each_initiate_has_a_new_nonce() -> None:
    assert handshake.initiate(KEY)["nonce"] != handshake.initiate(KEY)["nonce"]


def test_initiate_from_another_key_is_refused() -> None:
    with pytest.raises(HandshakeError):
        handshake.verify_initiate(OTHER_PUBLIC, handshake.initiate(KEY))


@pytest.mark.parametrize("change", ["nonce", "signature"])
def test_altered_initiate_is_refused(change: str) -> None:
    body = handshake.initiate(KEY)
    raw = bytearray(base64.b64decode(body[change]))
    raw[0] ^= 1
    with pytest.raises(HandshakeError):
        handshake.verify_initiate(PUBLIC, {**body, change: base64.b64encode(raw).decode()})


@pytest.mark.parametrize(
    "body", [{}, {"nonce": 1, "signature": 2}, {"nonce": "***", "signature": "x"}]
)
def test_malformed_initiate_is_refused(body: dict[str, object]) -> None:
    with pytest.raises(HandshakeError):
        handshake.verify_initiate(PUBLIC, body)


def test_wrapped_key_round_trips() -> None:
    key = os.urandom(32)
    assert handshake.unwrap_session_key(KEY, handshake.wrap_session_key(PUBLIC, key)) == key


@pytest.mark.parametrize("size", [16, 24, 31, 33])
def test_session_keys_other_than_32_bytes_are_refused(size: int) -> None:
    _unwrap_refused(handshake.wrap_session_key(PUBLIC, os.urandom(size)))


def test_key_wrapped_for_another_server_is_refused() -> None:
    _unwrap_refused(handshake.wrap_session_key(OTHER_PUBLIC, os.urandom(32)))


def test_pkcs1v15_wrapping_is_refused() -> None:
    wrapped = PUBLIC.encrypt(os.urandom(32), padding.PKCS1v15())
    _unwrap_refused(base64.b64encode(wrapped).decode())


@pytest.mark.parametrize("value", [None, 5, [], {"a": 1}, b"AAAA", "", "not base64!", "AAAA" * 200])
def test_malformed_wrapped_keys_are_refused(value: object) -> None:
    _unwrap_refused(value)
