"""The client JWT: RS256 over ``{"iat", "exp", "sub"}`` (upstream-protocol 3.1, 3.2).

PyJWT checks the signature only; we check the claims ourselves against an injected
``now`` so that tests can move time. Every failure raises TokenError with the same
text: the API must not reveal why a token failed, nor whether its user exists.
"""

from __future__ import annotations

import json

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from sealskin.crypto import TokenError

ALGORITHM = "RS256"
INVALID_TOKEN = "Invalid or expired token."
_MAX_TOKEN_CHARS = 8192  # an RS256 token of a 16384-bit key is about 3 KiB
_REFUSED_HEADERS = frozenset({"crit", "b64"})  # no extensions, no unencoded payloads (RFC 7797)
_MAX_TIME = 2.0**53  # claims beyond are nonsense and would overflow float arithmetic
_JWS = jwt.PyJWS()


def mint(
    private_key: rsa.RSAPrivateKey, username: str, *, now: float, lifetime_seconds: int = 300
) -> str:
    """A token like the extension's: header ``{"alg":"RS256","typ":"JWT"}``, integer seconds."""
    iat = int(now)
    claims = {"iat": iat, "exp": iat + lifetime_seconds, "sub": username}
    return jwt.encode(claims, private_key, algorithm=ALGORITHM)


def subject(token: str) -> str:
    """The ``sub`` claim, read WITHOUT verifying: only to find whose key verifies the token."""
    _checked_header(token)
    return _subject_of(_claims(_unverified_payload(token)))


def verify(
    token: str,
    public_key: rsa.RSAPublicKey,
    *,
    now: float,
    leeway_seconds: int = 60,
    max_lifetime_seconds: int = 600,
) -> str:
    """Verifies an RS256 token and returns its ``sub``.

    Requires ``sub`` and ``exp``; checks ``exp``, ``nbf`` and ``iat`` with ``leeway_seconds``
    of clock skew; refuses tokens meant to live longer than ``max_lifetime_seconds``.
    """
    _checked_header(token)
    try:
        signed = _JWS.decode_complete(token, public_key, algorithms=[ALGORITHM])
    except (jwt.PyJWTError, ValueError, TypeError):
        raise TokenError(INVALID_TOKEN) from None
    claims = _claims(_payload_bytes(signed))
    exp = _time_claim(claims, "exp")
    nbf = _time_claim(claims, "nbf")
    iat = _time_claim(claims, "iat")
    if exp is None or exp <= now - leeway_seconds:
        raise TokenError(INVALID_TOKEN)
    for not_before in (nbf, iat):
        if not_before is not None and not_before > now + leeway_seconds:
            raise TokenError(INVALID_TOKEN)
    if iat is not None:
        too_long = exp - iat > max_lifetime_seconds
    else:
        too_long = exp - now > max_lifetime_seconds + leeway_seconds
    if too_long:
        raise TokenError(INVALID_TOKEN)
    return _subject_of(claims)


def _checked_header(token: object) -> None:
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS or token.count(".") != 2:
        raise TokenError(INVALID_TOKEN)
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, ValueError, TypeError):
        raise TokenError(INVALID_TOKEN) from None
    if header.get("alg") != ALGORITHM or not _REFUSED_HEADERS.isdisjoint(header):
        raise TokenError(INVALID_TOKEN)


def _unverified_payload(token: str) -> bytes:
    try:
        signed = _JWS.decode_complete(token, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError):
        raise TokenError(INVALID_TOKEN) from None
    return _payload_bytes(signed)


def _payload_bytes(signed: dict[str, object]) -> bytes:
    payload = signed.get("payload")
    if not isinstance(payload, bytes):
        raise TokenError(INVALID_TOKEN)
    return payload


def _claims(payload: bytes) -> dict[str, object]:
    try:
        claims = json.loads(payload, parse_constant=_refuse_constant)
    except (ValueError, TypeError, RecursionError):
        raise TokenError(INVALID_TOKEN) from None
    if not isinstance(claims, dict):
        raise TokenError(INVALID_TOKEN)
    return claims


def _time_claim(claims: dict[str, object], name: str) -> float | None:
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenError(INVALID_TOKEN)
    if not -_MAX_TIME < value < _MAX_TIME:  # also refuses NaN, and 1e999 parsed as infinity
        raise TokenError(INVALID_TOKEN)
    return float(value)


def _subject_of(claims: dict[str, object]) -> str:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise TokenError(INVALID_TOKEN)
    return sub


def _refuse_constant(name: str) -> object:
    raise ValueError(name)
