"""Session paths, the single-use URL gate and the per-session cookie check.

A session is opened with ``GET /<session_id>/?access_token=T``: the directory consumes the
token (single use, constant-time compare; fixes upstream-protocol 10 W8) and returns a fresh
cookie value, which we set as ``<prefix>_<session_id>`` scoped to ``Path=/<session_id>/``, then
303 to the same URL without the token so it leaves the address bar and history. Every other
request of the session needs that cookie; the check is from memory (upstream-protocol 10 P4).
"""

from __future__ import annotations

import json
import re
from urllib.parse import unquote_to_bytes

from twisted.logger import Logger
from twisted.web.http_headers import Headers
from twisted.web.server import Request

from sealskin.proxy import SessionDirectory

log = Logger()

_SESSION_PATH = re.compile(
    rb"^/([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(/.*)?$",
    re.DOTALL,
)
ACCESS_TOKEN = b"access_token"


def split_session_path(path: bytes) -> tuple[str, bytes] | None:
    """``/<uuid>/rest`` -> (uuid as written, ``/rest``; empty if no slash); else None.

    ``path`` excludes the query. Both cases of hex are accepted (upstream-protocol 7.3).
    """
    found = _SESSION_PATH.match(path)
    if found is None:
        return None
    return found.group(1).decode("ascii"), found.group(2) or b""


def query_without(query: bytes, name: bytes) -> bytes:
    """The raw query minus every ``name`` parameter; other parameters keep their encoding."""
    kept = [part for part in query.split(b"&")
            if part and unquote_to_bytes(part.split(b"=", 1)[0].replace(b"+", b" ")) != name]
    return b"&".join(kept)


def query_flag(query: bytes, name: bytes) -> bytes | None:
    """The (decoded) value of the first ``name`` parameter, or None."""
    for part in query.split(b"&"):
        key, _, value = part.partition(b"=")
        if unquote_to_bytes(key.replace(b"+", b" ")) == name:
            return unquote_to_bytes(value.replace(b"+", b" "))
    return None


def json_error(request: Request, status: int, detail: str) -> bytes:
    """Sets ``status`` and returns the ``{"detail": ...}`` body (our sentence, never str(exc))."""
    request.setResponseCode(status)
    request.responseHeaders.setRawHeaders(b"content-type", [b"application/json"])
    request.responseHeaders.setRawHeaders(b"cache-control", [b"no-store"])
    return json.dumps({"detail": detail}).encode("utf-8")


class Gate:
    """Issues and checks the per-session cookies (one per session, so sessions never collide)."""

    def __init__(self, directory: SessionDirectory, cookie_name_prefix: str) -> None:
        self._directory = directory
        self._prefix = cookie_name_prefix.encode("ascii")

    def cookie_name(self, session_id: str) -> bytes:
        return self._prefix + b"_" + session_id.encode("ascii")

    def is_ours(self, cookie_name: bytes) -> bool:
        """True for any SealSkin session cookie, of this session or another (never forwarded)."""
        return cookie_name == self._prefix or cookie_name.startswith(self._prefix + b"_")

    def refusal(self, headers: Headers, session_id: str) -> tuple[int, str] | None:
        """None if the request carries this session's valid cookie, else (status, detail).

        401 without our cookie, 403 with a wrong one; a live-session check is the
        directory's (it admits nothing for ended sessions).
        """
        value = self._cookie_value(headers, session_id)
        if value is None:
            return 401, "Authentication required."
        if not self._directory.admit(session_id.lower(), value):
            return 403, "Not allowed."
        return None

    def _cookie_value(self, headers: Headers, session_id: str) -> str | None:
        wanted = self.cookie_name(session_id)
        for line in headers.getRawHeaders(b"cookie", []):
            for pair in line.split(b";"):
                name, sep, value = pair.strip().partition(b"=")
                if sep and name == wanted:
                    try:
                        return value.strip(b'"').decode("ascii")
                    except UnicodeDecodeError:
                        return None
        return None

    def app_cookies(self, lines: list[bytes]) -> list[bytes]:
        """``Cookie`` header lines without SealSkin cookies, keeping the app's own
        (upstream-protocol 10 W11); an empty list if nothing is left."""
        kept = [pair for line in lines for pair in (p.strip() for p in line.split(b";"))
                if pair and not self.is_ours(pair.partition(b"=")[0])]
        return [b"; ".join(kept)] if kept else []

    async def redeem(self, request: Request, session_id: str, path: bytes, query: bytes) -> bytes:
        """Trades the URL's access token for a cookie: 303 without the token, or 403 JSON.

        ``embedded=true`` (the app lab frames the session) makes the cookie SameSite=None.
        Safe to cancel: the directory consumes the token or not, and we answer nothing.
        """
        token = query_flag(query, ACCESS_TOKEN) or b""
        try:
            cookie = await self._directory.redeem(session_id.lower(), token.decode("ascii"))
        except UnicodeDecodeError:
            cookie = None
        if cookie is None:
            log.debug("refused access token for session {session_id}", session_id=session_id)
            return json_error(request, 403, "Invalid or expired session link.")
        embedded = query_flag(query, b"embedded") == b"true"
        request.responseHeaders.addRawHeader(b"set-cookie", self._set_cookie(session_id, cookie, embedded))
        rest = query_without(query, ACCESS_TOKEN)
        location = path + (b"?" + rest if rest else b"")
        request.setResponseCode(303)
        request.responseHeaders.setRawHeaders(b"location", [location])
        request.responseHeaders.setRawHeaders(b"cache-control", [b"no-store"])
        request.responseHeaders.setRawHeaders(b"referrer-policy", [b"no-referrer"])
        return b""

    def _set_cookie(self, session_id: str, value: str, embedded: bool) -> bytes:
        same_site = b"None" if embedded else b"Lax"
        return b"%s=%s; Path=/%s/; HttpOnly; Secure; SameSite=%s" % (
            self.cookie_name(session_id), value.encode("ascii"), session_id.encode("ascii"), same_site)
