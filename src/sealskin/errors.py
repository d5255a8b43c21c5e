"""The one exception that reaches API clients, and its status table."""

from __future__ import annotations

import enum


class Kind(enum.Enum):
    """What went wrong, from the client's point of view (STYLE.md section 5)."""

    HANDSHAKE = "handshake"
    BAD_REQUEST = "bad_request"
    INVALID = "invalid"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    TOO_LARGE = "too_large"
    LIMITED = "limited"
    UNAVAILABLE = "unavailable"
    BAD_GATEWAY = "bad_gateway"
    TIMEOUT = "timeout"
    INTERNAL = "internal"


# One table, not enum values: equal values would silently alias members.
STATUS: dict[Kind, int] = {
    Kind.HANDSHAKE: 400,
    Kind.BAD_REQUEST: 400,  # only for checks made before any side effect (upstream R9)
    Kind.INVALID: 422,
    Kind.UNAUTHENTICATED: 401,
    Kind.FORBIDDEN: 403,
    Kind.NOT_FOUND: 404,
    Kind.CONFLICT: 409,
    Kind.TOO_LARGE: 413,
    Kind.LIMITED: 429,
    Kind.UNAVAILABLE: 503,
    Kind.BAD_GATEWAY: 502,
    Kind.TIMEOUT: 504,
    Kind.INTERNAL: 500,
}


class ApiError(Exception):
    """A failure with a client-facing sentence; ``detail`` is ours, never ``str(exc)``."""

    def __init__(self, kind: Kind, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail

    @property
    def status(self) -> int:
        return STATUS[self.kind]

    def __repr__(self) -> str:
        return f"ApiError({self.kind.name}, {self.detail!r})"
