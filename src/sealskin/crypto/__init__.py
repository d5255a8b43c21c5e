"""Pure cryptography shared by the server and the CLI: no Twisted imports here.

Handshake (upstream-protocol 2.1, 2.2), envelope (2.3, 2.4), client JWTs (3.1, 3.2),
key formats (3.3, 3.4), in-memory crypto sessions (2.8) and secrets at rest.
Every failure raises a :class:`CryptoError` subclass whose message is one of our own
fixed sentences, never the text of a library exception.
"""

from __future__ import annotations


class CryptoError(ValueError):
    """Base of every error raised by :mod:`sealskin.crypto`."""


class EnvelopeError(CryptoError):
    """An AES-GCM envelope is malformed or does not decrypt."""


class PlaintextError(EnvelopeError):
    """An envelope opened, but its plaintext is not a JSON object (the message says which)."""


class HandshakeError(CryptoError):
    """A handshake message is malformed, unsigned or undecryptable."""


class TokenError(CryptoError):
    """A client JWT is malformed or fails verification."""


class KeyFormatError(CryptoError):
    """A PEM key is unreadable, of the wrong kind or too small."""


__all__ = ["CryptoError", "EnvelopeError", "HandshakeError", "KeyFormatError", "TokenError"]
