"""Our crypto against golden vectors made with `cryptography` alone (make_vectors.py).

Deterministic values (AES-GCM under a fixed IV, RS256) are compared byte for byte in both
directions; randomized ones (PSS signatures, OAEP wrapping) are verified or decrypted.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from sealskin.crypto import envelope, handshake, keys, tokens

GOLDEN: dict[str, Any] = json.loads(
    Path(__file__).with_name("golden.json").read_text(encoding="utf-8")
)
RSA = GOLDEN["rsa"]
SERVER_KEY = keys.load_private_pem(RSA["private_pkcs8"].encode())
SERVER_PUBLIC = keys.load_public_pem(RSA["public_spki"])
AES_KEY = base64.b64decode(GOLDEN["envelope"]["key"])
IV = base64.b64decode(GOLDEN["envelope"]["iv"])
CASES = GOLDEN["envelope"]["cases"]
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def test_our_pem_output_is_the_vector_pem_byte_for_byte() -> None:
    assert keys.private_pem(SERVER_KEY) == RSA["private_pkcs8"]
    assert keys.public_pem(SERVER_KEY) == RSA["public_spki"]
    assert keys.normalize_public_pem(RSA["public_pkcs1"]) == RSA["public_spki"]
    assert keys.private_pem(keys.load_private_pem(RSA["private_pkcs1"].encode())) == RSA[
        "private_pkcs8"
    ]


def test_vector_initiate_signature_verifies_with_our_client_code() -> None:
    handshake.verify_initiate(SERVER_PUBLIC, GOLDEN["handshake"]["initiate"])


def test_our_initiate_verifies_with_plain_cryptography() -> None:
    body = handshake.initiate(SERVER_KEY)
    nonce = base64.b64decode(body["nonce"], validate=True)
    signature = base64.b64decode(body["signature"], validate=True)
    assert len(nonce) == 32
    SERVER_PUBLIC.verify(signature, nonce, PSS, hashes.SHA256())


def test_vector_wrapped_key_unwraps_to_the_vector_key() -> None:
    wrapped = GOLDEN["handshake"]["encrypted_session_key"]
    expected = base64.b64decode(GOLDEN["handshake"]["session_key"])
    assert handshake.unwrap_session_key(SERVER_KEY, wrapped) == expected


def test_our_wrapped_key_decrypts_with_plain_cryptography() -> None:
    wrapped = handshake.wrap_session_key(SERVER_PUBLIC, AES_KEY)
    assert SERVER_KEY.decrypt(base64.b64decode(wrapped), OAEP) == AES_KEY


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["plaintext"][:20])
def test_seal_with_the_vector_iv_gives_the_vector_body(case: dict[str, Any]) -> None:
    sealed = envelope.seal(AES_KEY, case["plaintext"].encode(), IV)
    assert envelope.dumps_compact(sealed) == case["body"].encode()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["plaintext"][:20])
def test_vector_body_opens_to_the_vector_object(case: dict[str, Any]) -> None:
    body = json.loads(case["body"])
    assert envelope.open_envelope(AES_KEY, body) == (IV, case["plaintext"].encode())
    assert envelope.open_json(AES_KEY, body) == (IV, case["object"])


@pytest.mark.parametrize("case", CASES, ids=lambda c: c["plaintext"][:20])
def test_seal_json_plaintext_is_the_compact_vector_text(case: dict[str, Any]) -> None:
    sealed = json.loads(envelope.seal_json(AES_KEY, case["object"]))
    assert envelope.open_envelope(AES_KEY, sealed)[1] == case["plaintext"].encode()


def test_mint_reproduces_the_vector_token() -> None:
    jwt = GOLDEN["jwt"]
    assert tokens.mint(SERVER_KEY, jwt["sub"], now=jwt["now"]) == jwt["token"]


def test_vector_token_verifies() -> None:
    jwt = GOLDEN["jwt"]
    assert tokens.subject(jwt["token"]) == jwt["sub"]
    assert tokens.verify(jwt["token"], SERVER_PUBLIC, now=jwt["now"] + 100) == jwt["sub"]
