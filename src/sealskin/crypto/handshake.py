"""The two-step handshake that gives a client an AES session key (upstream-protocol 2.1, 2.2).

Server: ``initiate`` signs 32 random bytes with RSA-PSS; ``unwrap_session_key`` opens the
client's RSA-OAEP-wrapped AES-256 key. Client: ``verify_initiate``, ``wrap_session_key``.
RSA private-key operations take milliseconds: the server runs them on its work pool.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sealskin.crypto import EnvelopeError, HandshakeError
from sealskin.crypto.envelope import b64decode_strict, b64encode

NONCE_BYTES = 32
SESSION_KEY_BYTES = 32
SESSION_KEY_FAILED = "Failed to decrypt session key"  # upstream-protocol 2.2: the wire text

# upstream-protocol 2.11: the exact parameters WebCrypto uses on the other side.
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def initiate(server_key: rsa.RSAPrivateKey) -> dict[str, str]:
    """The body of the ``/api/handshake/initiate`` answer: ``{"nonce", "signature"}``."""
    nonce = os.urandom(NONCE_BYTES)
    signature = server_key.sign(nonce, _PSS, hashes.SHA256())
    return {"nonce": b64encode(nonce), "signature": b64encode(signature)}


def unwrap_session_key(server_key: rsa.RSAPrivateKey, encrypted_session_key_b64: object) -> bytes:
    """The raw 32-byte AES key from the ``encrypted_session_key`` member of the exchange body.

    Raises HandshakeError with the upstream text for a non-string, bad base64, an OAEP
    failure, or a key that is not exactly 32 bytes (the extension always sends 32).
    """
    try:
        wrapped = b64decode_strict(encrypted_session_key_b64)
        key = server_key.decrypt(wrapped, _OAEP)
    except (EnvelopeError, ValueError):
        raise HandshakeError(SESSION_KEY_FAILED) from None
    if len(key) != SESSION_KEY_BYTES:
        raise HandshakeError(SESSION_KEY_FAILED)
    return key


def verify_initiate(server_public_key: rsa.RSAPublicKey, body: Mapping[str, object]) -> None:
    """Checks the server's signature over its nonce; raises HandshakeError if it fails."""
    try:
        nonce = b64decode_strict(body.get("nonce"))
        signature = b64decode_strict(body.get("signature"))
        server_public_key.verify(signature, nonce, _PSS, hashes.SHA256())
    except (EnvelopeError, InvalidSignature, ValueError):
        raise HandshakeError("The server's handshake signature does not verify.") from None
    if len(nonce) != NONCE_BYTES:
        raise HandshakeError("The server's handshake nonce is not 32 bytes.")


def wrap_session_key(server_public_key: rsa.RSAPublicKey, key: bytes) -> str:
    """The ``encrypted_session_key`` value: base64 of RSA-OAEP(SHA-256) over the raw key."""
    return b64encode(server_public_key.encrypt(key, _OAEP))
