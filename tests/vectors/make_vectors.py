"""Writes golden.json: handshake, envelope and JWT vectors made with `cryptography` alone.

Run once (``python tests/vectors/make_vectors.py``) and commit the output; rerunning makes
a new RSA key and new randomized PSS/OAEP values, which the tests accept equally. On
purpose nothing here imports sealskin: the vectors restate upstream-protocol 2.1-2.4 and
3.1 independently of the code they check.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

OUT = Path(__file__).with_name("golden.json")
AES_KEY = bytes(range(32))
IV = bytes.fromhex("000102030405060708090a0b")
NONCE = bytes.fromhex("f0" * 32)
NOW = 1737000000
PLAINTEXTS = [
    {},
    {"application_id": "firefox", "home_name": "cleanroom"},
    {"name": "Zoë ☃ 😀", "list": [1, 2.5, True, None], "nested": {"a": "\"quoted\"\n"}},
]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def compact(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def main() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key()
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    envelopes = []
    for obj in PLAINTEXTS:
        plaintext = compact(obj)
        sealed = AESGCM(AES_KEY).encrypt(IV, plaintext, None)
        body = compact({"iv": b64(IV), "ciphertext": b64(sealed)})
        envelopes.append({"object": obj, "plaintext": plaintext.decode(), "body": body.decode()})
    header = compact({"alg": "RS256", "typ": "JWT"})
    claims = compact({"iat": NOW, "exp": NOW + 300, "sub": "alice"})
    signing_input = f"{b64url(header)}.{b64url(claims)}".encode("ascii")
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    vectors = {
        "rsa": {
            "private_pkcs8": key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ).decode(),
            "private_pkcs1": key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ).decode(),
            "public_spki": public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode(),
            "public_pkcs1": public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
            ).decode(),
        },
        "handshake": {
            "initiate": {
                "nonce": b64(NONCE),
                "signature": b64(key.sign(NONCE, pss, hashes.SHA256())),
            },
            "session_key": b64(AES_KEY),
            "encrypted_session_key": b64(public.encrypt(AES_KEY, oaep)),
        },
        "envelope": {"key": b64(AES_KEY), "iv": b64(IV), "cases": envelopes},
        "jwt": {
            "now": NOW,
            "sub": "alice",
            "token": f"{signing_input.decode()}.{b64url(signature)}",
        },
    }
    OUT.write_text(json.dumps(vectors, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
