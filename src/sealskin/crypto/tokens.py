"""The client JWT: RS256 over ``{"iat", "exp", "sub"}`` (upstream-protocol 3.1, 3.2).

PyJWT parses the token and checks the signature; we check the claims ourselves against
an injected ``now`` so that tests can move time. Every failure raises TokenError with the
same text: the API must not reveal why a token failed, nor whether its user exists.

The server parses each token once (:func:`parse`), reads ``sub`` to find the key, then
checks the parsed token (:func:`check`): PyJWT's segment decoding is per-character
Python, and parsing four times per request was a third of an encrypted call's CPU.
"""

from __future__ import annotations

import json

import attrs
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from sealskin.crypto import TokenError

ALGORITHM = "RS256"
INVALID_TOKEN = "Invalid or expired token."
_MAX_TOKEN_CHARS = 8192  # an RS256 token of a 16384-bit key is about 3 KiB
_REFUSED_HEADERS = frozenset({"crit", "b64"})  # no extensions, no unencoded payloads (RFC 7797)
_MAX_TIME = 2.0**53  # claims beyond are nonsense and would overflow float arithmetic
_JWS = jwt.PyJWS()
_RS256 = RSAAlgorithm(RSAAlgorithm.SHA256)


@attrs.frozen
class Parsed:
    """A token whose form, header and claims were read but whose signature is unchecked."""

    signing_input: bytes
    signature: bytes
    claims: dict[str, object]

    @property
    def subject(self) -> str:
        """``sub``, NOT verified: only to find whose key verifies the token."""
        return _subject_of(self.claims)


def mint(
    private_key: rsa.RSAPrivateKey, username: str, *, now: float, lifetime_seconds: int = 300
) -> str:
    """A token like the extension's: header ``{"alg":"RS256","typ":"JWT"}``, integer seconds."""
    iat = int(now)
    claims = {"iat": iat, "exp": iat + lifetime_seconds, "sub": username}
    return jwt.encode(claims, private_key, algorithm=ALGORITHM)


def parse(token: str) -> Parsed:
    """Reads a compact RS256 token without verifying it; TokenError if it is malformed.

    Refuses other algorithms, ``crit`` and ``b64`` headers, non-object claims and a
    missing or empty ``sub``.
    """
    _checked_size(token)
    try:
        signed = _JWS.decode_complete(token, options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError):
        raise TokenError(INVALID_TOKEN) from None
    header = signed.get("header")
    signature = signed.get("signature")
    if (not isinstance(header, dict) or header.get("alg") != ALGORITHM
            or not _REFUSED_HEADERS.isdisjoint(header) or not isinstance(signature, bytes)):
        raise TokenError(INVALID_TOKEN)
    parsed = Parsed(token.rsplit(".", 1)[0].encode("utf-8"), signature,
                    _claims(_payload_bytes(signed)))
    _subject_of(parsed.claims)
    return parsed


def subject(token: str) -> str:
    """The ``sub`` claim, read WITHOUT verifying: only to find whose key verifies the token."""
    return parse(token).subject


def verify(
    token: str,
    public_key: rsa.RSAPublicKey,
    *,
    now: float,
    leeway_seconds: int = 60,
    max_lifetime_seconds: int = 600,
) -> str:
    """Verifies an RS256 token and returns its ``sub`` (see :func:`check`)."""
    return check(parse(token), public_key, now=now, leeway_seconds=leeway_seconds,
                 max_lifetime_seconds=max_lifetime_seconds)


def check(
    parsed: Parsed,
    public_key: rsa.RSAPublicKey,
    *,
    now: float,
    leeway_seconds: int = 60,
    max_lifetime_seconds: int = 600,
) -> str:
    """Verifies a parsed token's signature and claims and returns its ``sub``.

    Requires ``sub`` and ``exp``; checks ``exp``, ``nbf`` and ``iat`` with ``leeway_seconds``
    of clock skew; refuses tokens meant to live longer than ``max_lifetime_seconds``.
    """
    try:
        valid = _RS256.verify(parsed.signing_input, public_key, parsed.signature)
    except (jwt.PyJWTError, ValueError, TypeError):
        valid = False
    if not valid:
        raise TokenError(INVALID_TOKEN)
    return check_claims(parsed, now=now, leeway_seconds=leeway_seconds,
                        max_lifetime_seconds=max_lifetime_seconds)


def check_claims(parsed: Parsed, *, now: float, leeway_seconds: int = 60,
                 max_lifetime_seconds: int = 600) -> str:
    """The time and subject checks of :func:`check`, for a token whose signature was
    already verified with its subject's current key. Returns ``sub``."""
    claims = parsed.claims
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


def _checked_size(token: object) -> None:
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS or token.count(".") != 2:
        raise TokenError(INVALID_TOKEN)


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
