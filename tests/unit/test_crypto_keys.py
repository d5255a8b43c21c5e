"""Key formats: what we emit (PKCS#8, SPKI) and what we accept."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from sealskin.crypto import KeyFormatError, keys

KEY = keys.generate_rsa(2048)


def _public(fmt: serialization.PublicFormat) -> str:
    return KEY.public_key().public_bytes(serialization.Encoding.PEM, fmt).decode()


def test_generated_keys_use_e_65537_and_the_asked_size() -> None:
    numbers = KEY.public_key().public_numbers()
    assert numbers.e == 65537 and KEY.key_size == 2048


def test_private_pem_is_unencrypted_pkcs8() -> None:
    pem = keys.private_pem(KEY)
    assert pem.startswith("-----BEGIN PRIVATE KEY-----\n")
    assert keys.private_pem(keys.load_private_pem(pem.encode())) == pem


def test_public_pem_is_spki_from_either_half() -> None:
    pem = keys.public_pem(KEY)
    assert pem.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert keys.public_pem(KEY.public_key()) == pem


def test_pkcs1_private_key_is_accepted() -> None:
    pem = KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    assert keys.private_pem(keys.load_private_pem(pem)) == keys.private_pem(KEY)


def test_encrypted_or_foreign_private_keys_are_refused() -> None:
    encrypted = KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    foreign = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for data in (encrypted, foreign, b"", b"garbage", keys.public_pem(KEY).encode()):
        with pytest.raises(KeyFormatError):
            keys.load_private_pem(data)


def test_spki_and_pkcs1_public_keys_normalize_to_spki() -> None:
    spki = _public(serialization.PublicFormat.SubjectPublicKeyInfo)
    pkcs1 = _public(serialization.PublicFormat.PKCS1)
    assert pkcs1.startswith("-----BEGIN RSA PUBLIC KEY-----")
    assert keys.normalize_public_pem(pkcs1) == spki
    assert keys.normalize_public_pem("\n  " + spki + "\n\n") == spki


def test_private_key_given_as_public_is_refused_clearly() -> None:
    with pytest.raises(KeyFormatError, match="private key"):
        keys.load_public_pem(keys.private_pem(KEY))


def test_small_rsa_key_is_refused() -> None:
    small = keys.public_pem(keys.generate_rsa(1024))
    with pytest.raises(KeyFormatError, match="too small"):
        keys.load_public_pem(small)
    assert keys.load_public_pem(small, min_bits=1024).key_size == 1024


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        "-----BEGIN PUBLIC KEY-----\nzoë\n-----END PUBLIC KEY-----\n",
        "A" * 100_000,
    ],
)
def test_garbage_public_keys_are_refused(text: str) -> None:
    with pytest.raises(KeyFormatError):
        keys.load_public_pem(text)


def test_non_rsa_public_keys_are_refused() -> None:
    for key in (ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate()):
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        with pytest.raises(KeyFormatError, match="not an RSA key"):
            keys.load_public_pem(pem.decode())


def test_messages_are_ours() -> None:
    with pytest.raises(KeyFormatError) as caught:
        keys.load_public_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    assert str(caught.value) == (
        "Not a PEM public key (BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY expected)."
    )
