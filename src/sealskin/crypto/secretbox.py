"""Secrets at rest: small texts sealed with XSalsa20-Poly1305 (NaCl SecretBox).

The server keeps per-session app credentials in SQLite sealed with a key that lives in
its own file, so a copied database alone reveals nothing.
"""

from __future__ import annotations

import os

import nacl.exceptions
import nacl.secret
import nacl.utils

from sealskin.crypto import CryptoError

KEY_BYTES = nacl.secret.SecretBox.KEY_SIZE


class SecretKeeper:
    """Seals and opens texts under one 32-byte key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise CryptoError("A secret key must be exactly 32 bytes.")
        self._box = nacl.secret.SecretBox(key)

    @classmethod
    def load_or_create(cls, path: str) -> SecretKeeper:
        """Reads the key file at ``path``, first creating it (mode 0600) if missing.

        Blocking file I/O, meant for startup. Creation is atomic: a complete file
        appears under ``path`` or nothing does, and an existing file is never replaced.
        Raises CryptoError if the file does not hold exactly 32 bytes.
        """
        if not os.path.exists(path):
            _create_key_file(path, nacl.utils.random(KEY_BYTES))
        with open(path, "rb") as f:
            key = f.read(KEY_BYTES + 1)
        if len(key) != KEY_BYTES:
            raise CryptoError(f"The secret key file {path} does not hold exactly 32 bytes.")
        return cls(key)

    def seal(self, text: str) -> bytes:
        """Nonce, ciphertext and tag in one blob."""
        return bytes(self._box.encrypt(text.encode("utf-8")))

    def open(self, blob: bytes) -> str:
        """The sealed text; raises CryptoError if the blob was altered or sealed elsewhere."""
        try:
            return self._box.decrypt(blob).decode("utf-8")
        except (nacl.exceptions.CryptoError, ValueError, TypeError):
            raise CryptoError("A stored secret does not decrypt.") from None


def _create_key_file(path: str, key: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    temporary = f"{path}.{os.getpid()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temporary, path)  # unlike rename, never replaces a key created meanwhile
        except FileExistsError:
            pass
    finally:
        os.unlink(temporary)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
