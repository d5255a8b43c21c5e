"""Client JWTs: what we mint, and every way a token must fail with the one fixed text."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sealskin.crypto import TokenError, keys, tokens

KEY = keys.generate_rsa(2048)
PUBLIC = KEY.public_key()
OTHER = keys.generate_rsa(2048)
NOW = 1_737_000_000.0


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token(
    claims: dict[str, object],
    *,
    header: dict[str, object] | None = None,
    key: rsa.RSAPrivateKey = KEY,
) -> str:
    header = {"alg": "RS256", "typ": "JWT"} if header is None else header
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"


def _claims(**changes: object) -> dict[str, object]:
    claims: dict[str, object] = {"iat": int(NOW), "exp": int(NOW) + 300, "sub": "alice"}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _refused(token: str, now: float = NOW) -> None:
    with pytest.raises(TokenError) as caught:
        tokens.verify(token, PUBLIC, now=now)
    assert str(caught.value) == tokens.INVALID_TOKEN


def test_minted_token_has_the_extension_shape() -> None:
    token = tokens.mint(KEY, "alice", now=NOW + 0.9)
    header, claims, _ = token.split(".")
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "RS256", "typ": "JWT"}
    assert base64.urlsafe_b64decode(claims + "==") == (
        b'{"iat":1737000000,"exp":1737000300,"sub":"alice"}'
    )
    assert tokens.verify(token, PUBLIC, now=NOW) == "alice"


def test_valid_token_within_leeway_is_accepted() -> None:
    assert tokens.verify(_token(_claims()), PUBLIC, now=NOW + 300 + 59) == "alice"
    assert tokens.verify(_token(_claims(iat=int(NOW) + 59)), PUBLIC, now=NOW) == "alice"


def test_subject_reads_sub_without_a_key() -> None:
    assert tokens.subject(_token(_claims(), key=OTHER)) == "alice"


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c.d", "a.b.c", "!!.??.**", _token(_claims(sub=None)),
     _token(_claims(sub=7)), _token(_claims(sub="")), _token(_claims(), header={"alg": "HS256"}),
     _token(_claims(), header={"alg": "none"}), _token(_claims(), header={"typ": "JWT"})],
)
def test_subject_refuses_malformed_tokens(token: str) -> None:
    with pytest.raises(TokenError):
        tokens.subject(token)


def test_alg_none_is_refused() -> None:
    header = _b64url(b'{"alg":"none","typ":"JWT"}')
    claims = _b64url(json.dumps(_claims()).encode())
    _refused(f"{header}.{claims}.")


def test_hs256_signed_with_the_public_pem_is_refused() -> None:
    header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    signing_input = f"{header}.{_b64url(json.dumps(_claims()).encode())}"
    secret = keys.public_pem(PUBLIC).encode()
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    _refused(f"{signing_input}.{_b64url(mac)}")


def test_expired_token_is_refused_after_the_leeway() -> None:
    _refused(_token(_claims()), now=NOW + 300 + 60)


def test_future_nbf_is_refused() -> None:
    _refused(_token(_claims(nbf=int(NOW) + 61)))


def test_future_iat_is_refused() -> None:
    _refused(_token(_claims(iat=int(NOW) + 61, exp=int(NOW) + 361)))


@pytest.mark.parametrize("missing", ["sub", "exp"])
def test_missing_required_claim_is_refused(missing: str) -> None:
    claims = _claims()
    del claims[missing]
    _refused(_token(claims))


def test_missing_iat_is_allowed_within_the_lifetime() -> None:
    claims = _claims()
    del claims["iat"]
    assert tokens.verify(_token(claims), PUBLIC, now=NOW) == "alice"


def test_too_long_lifetime_is_refused() -> None:
    _refused(_token(_claims(exp=int(NOW) + 601)))


def test_too_long_lifetime_without_iat_is_refused() -> None:
    claims = _claims(exp=int(NOW) + 661)
    del claims["iat"]
    _refused(_token(claims))


@pytest.mark.parametrize("bad", ["1737000300", True, 1e999, 10**400, [1], {"a": 1}])
def test_non_numeric_or_absurd_exp_is_refused(bad: object) -> None:
    _refused(_token(_claims(exp=bad)))


def test_wrong_key_is_refused() -> None:
    _refused(_token(_claims(), key=OTHER))


def test_tampered_payload_is_refused() -> None:
    header, _, signature = _token(_claims()).split(".")
    forged = _b64url(json.dumps(_claims(sub="admin")).encode())
    _refused(f"{header}.{forged}.{signature}")


def test_tampered_signature_is_refused() -> None:
    token = _token(_claims())
    flipped = "A" if token[-5] != "A" else "B"
    _refused(token[:-5] + flipped + token[-4:])


def test_crit_and_unencoded_payload_headers_are_refused() -> None:
    _refused(_token(_claims(), header={"alg": "RS256", "crit": ["exp"], "exp": 1}))
    _refused(_token(_claims(), header={"alg": "RS256", "b64": False, "crit": ["b64"]}))


@pytest.mark.parametrize("junk", ["", "x" * 10000, "a.b.c", "e30.e30.", 12])
def test_junk_is_refused_with_the_same_text(junk: str) -> None:
    _refused(junk)
