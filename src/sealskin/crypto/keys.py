"""RSA keys: generation and the PEM formats the extension can import (upstream-protocol 3.3, 3.4).

Private keys handed to clients are PKCS#8 ("BEGIN PRIVATE KEY") and public keys SPKI
("BEGIN PUBLIC KEY"): the extension's PEM parser knows nothing else. Key generation is
CPU-bound (seconds for 4096 bits): the server runs it on its work pool.
"""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sealskin.crypto import KeyFormatError

_PUBLIC_EXPONENT = 65537
_MAX_BITS = 16384  # bigger keys only serve to make every verification slow
_MAX_PEM_CHARS = 16 * 1024


def generate_rsa(bits: int) -> rsa.RSAPrivateKey:
    """A fresh RSA key with e = 65537. Blocking: seconds for 4096 bits."""
    return rsa.generate_private_key(public_exponent=_PUBLIC_EXPONENT, key_size=bits)


def private_pem(key: rsa.RSAPrivateKey) -> str:
    """Unencrypted PKCS#8 PEM ("BEGIN PRIVATE KEY"), the only format the extension imports."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def public_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    """SubjectPublicKeyInfo PEM ("BEGIN PUBLIC KEY") of a key or of a private key's public half."""
    public = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def load_private_pem(data: bytes) -> rsa.RSAPrivateKey:
    """Reads an unencrypted RSA private key, PKCS#8 or PKCS#1.

    Raises KeyFormatError for anything else, encrypted keys included.
    """
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFormatError(
            "Not an unencrypted PEM private key (PKCS#8 or PKCS#1 RSA expected)."
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyFormatError("The private key is not an RSA key.")
    return key


def load_public_pem(text: str, *, min_bits: int = 2048) -> rsa.RSAPublicKey:
    """Reads an RSA public key, SPKI ("BEGIN PUBLIC KEY") or PKCS#1 ("BEGIN RSA PUBLIC KEY").

    Raises KeyFormatError for private keys, other key types, keys under ``min_bits`` or
    over 16384 bits, and anything unreadable.
    """
    if not isinstance(text, str) or len(text) > _MAX_PEM_CHARS:
        raise KeyFormatError("The public key is not a PEM text of a sensible size.")
    if "PRIVATE KEY-----" in text:
        raise KeyFormatError("This is a private key: give the public key instead.")
    try:
        key = serialization.load_pem_public_key(text.strip().encode("ascii"))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFormatError(
            "Not a PEM public key (BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY expected)."
        ) from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyFormatError("The public key is not an RSA key.")
    if key.key_size < min_bits:
        raise KeyFormatError(f"The RSA public key is too small: at least {min_bits} bits needed.")
    if key.key_size > _MAX_BITS:
        raise KeyFormatError(f"The RSA public key is too large: at most {_MAX_BITS} bits.")
    return key


def normalize_public_pem(text: str) -> str:
    """The canonical SPKI PEM of a validated public key (see load_public_pem for the errors)."""
    return public_pem(load_public_pem(text))
