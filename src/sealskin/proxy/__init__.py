"""The session data plane: TLS site, single-use URL gate, HTTP and WebSocket proxying.

The proxy knows sessions only through :class:`SessionDirectory`, implemented by
orchestration; it never imports orchestration or the API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sealskin.model import SessionRoute


class SessionDirectory(Protocol):
    def route(self, session_id: str) -> SessionRoute | None:
        """The upstream of a live session, from memory (no I/O)."""
        ...

    async def redeem(self, session_id: str, access_token: str) -> str | None:
        """Consumes a single-use access token; returns a fresh cookie value, or None.

        The cookie is an HMAC under a key kept in the data directory, so it survives
        a restart and every proxy process can check it.
        """
        ...

    def admit(self, session_id: str, cookie_value: str) -> bool:
        """Constant-time check of a cookie value against the session's, from memory."""
        ...

    def touch(self, session_id: str) -> None:
        """Notes proxied traffic (idle-session reaping)."""
        ...

    def on_session_end(self, callback: Callable[[str], None]) -> None:
        """Registers ``callback(session_id)``, called when a session ends."""
        ...
