"""Session cookies any process holding the key can check (no shared table needed).

A cookie value is ``<nonce>.<mac>``: a fresh random nonce and an HMAC-SHA256 over
the session id and that nonce. It names one session only, survives a restart
(the key is kept in the data directory) and dies with its session (the proxy
refuses cookies of sessions that are not live). Never the URL token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

KEY_BYTES = 32


def load_or_create_key(path: str) -> bytes:
    """The cookie key: 32 random bytes, mode 0600, made once."""
    if not os.path.exists(path):
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(KEY_BYTES))
        os.replace(path + ".tmp", path)
    with open(path, "rb") as f:
        key = f.read()
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path} must hold {KEY_BYTES} bytes")
    return key


def _mac(key: bytes, session_id: str, nonce: str) -> str:
    digest = hmac.new(key, f"{session_id}.{nonce}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue(key: bytes, session_id: str) -> str:
    nonce = secrets.token_urlsafe(18)
    return f"{nonce}.{_mac(key, session_id, nonce)}"


def valid(key: bytes, session_id: str, value: str) -> bool:
    """Constant-time check that ``value`` was issued for ``session_id``."""
    nonce, dot, mac = value.partition(".")
    if not dot or not nonce or len(value) > 256:
        return False
    return hmac.compare_digest(mac, _mac(key, session_id, nonce))
