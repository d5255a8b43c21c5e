"""The AES-256-GCM envelope around request and response bodies (upstream-protocol 2.3, 2.4).

An envelope is ``{"iv": b64(12 bytes), "ciphertext": b64(ciphertext || 16-byte tag)}``,
no associated data, standard padded base64. AES on big bodies is CPU work: the server
moves bodies over its size threshold to the work pool and opens them in place
(:mod:`sealskin.crypto.inplace`).
"""

from __future__ import annotations

import binascii
import json
import os
from collections.abc import Mapping

import orjson
import pybase64
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealskin.crypto import EnvelopeError, PlaintextError

IV_BYTES = 12
TAG_BYTES = 16
DECRYPT_FAILED = "Failed to decrypt request"  # upstream-protocol 2.3: the wire text
UNKNOWN_SESSION = "Invalid or missing session ID"  # 2.4: the wire text
# Ours: the envelope opened, but what it held is not a request body.
PLAINTEXT_NOT_JSON = "The decrypted request is not JSON."
PLAINTEXT_NOT_OBJECT = "The decrypted request must be a JSON object."


def b64encode(data: bytes) -> str:
    """Standard alphabet, always padded: what ``atob`` and upstream expect."""
    return pybase64.b64encode(data).decode("ascii")


def b64decode_strict(s: object) -> bytes:
    """Decodes standard base64, tolerating only missing ``=`` padding.

    Raises EnvelopeError for non-strings and any character outside the alphabet
    (whitespace included).
    """
    if not isinstance(s, str):
        raise EnvelopeError(DECRYPT_FAILED)
    if len(s) % 4:
        s += "=" * (-len(s) % 4)
    try:
        # SIMD base64: an 8 MiB upload chunk is base64 twice (chunk, then envelope);
        # the standard library spends ~120 ms per chunk here, pybase64 ~5 ms
        return pybase64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError(DECRYPT_FAILED) from None


def seal(key: bytes, plaintext: bytes, iv: bytes | None = None) -> dict[str, str]:
    """Encrypts under a fresh random IV (``iv`` is for test vectors only: never reuse one)."""
    if iv is None:
        iv = os.urandom(IV_BYTES)
    elif len(iv) != IV_BYTES:
        raise EnvelopeError("The IV must be 12 bytes.")
    return {"iv": b64encode(iv), "ciphertext": b64encode(AESGCM(key).encrypt(iv, plaintext, None))}


def open_envelope(key: bytes, envelope: object) -> tuple[bytes, bytes]:
    """Returns ``(iv, plaintext)``; the IV lets the caller refuse replays.

    ``envelope`` is the parsed JSON body: a dict with exactly the string members ``iv``
    and ``ciphertext``. Any other shape, bad base64, a wrong IV size or a tag that does
    not verify raises EnvelopeError with the one upstream text.
    """
    if not isinstance(envelope, dict) or envelope.keys() != {"iv", "ciphertext"}:
        raise EnvelopeError(DECRYPT_FAILED)
    iv = b64decode_strict(envelope["iv"])
    data = b64decode_strict(envelope["ciphertext"])
    if len(iv) != IV_BYTES or len(data) < TAG_BYTES:
        raise EnvelopeError(DECRYPT_FAILED)
    try:
        return iv, AESGCM(key).decrypt(iv, data, None)
    except (InvalidTag, ValueError):
        raise EnvelopeError(DECRYPT_FAILED) from None


def dumps_compact(obj: Mapping[str, object]) -> bytes:
    """Compact UTF-8 JSON, as upstream's JSON responses are (no spaces, no ASCII escaping).

    Big bodies (an upload chunk is an 11 MB string) go through orjson, ~10x faster
    than the standard encoder's character-by-character escaping; the output is the
    same JSON text.
    """
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")) \
        if _small(obj) else None
    return text.encode() if text is not None else orjson.dumps(obj)


def _small(obj: Mapping[str, object]) -> bool:
    return not any(isinstance(v, str) and len(v) >= FAST_JSON_BYTES for v in obj.values())


def seal_json(key: bytes, obj: Mapping[str, object]) -> bytes:
    """The request body: the envelope, as compact JSON bytes, around compact JSON of ``obj``.

    A big plaintext (an upload chunk) is sealed without the envelope's ~15 MB text
    ever being a ``str`` or going through a JSON encoder: base64 needs no escaping,
    so the bytes are the same.
    """
    plaintext = dumps_compact(obj)
    if len(plaintext) < FAST_JSON_BYTES:
        return dumps_compact(seal(key, plaintext))
    iv = os.urandom(IV_BYTES)
    ciphertext = AESGCM(key).encrypt(iv, plaintext, None)
    del plaintext
    return b"".join((b'{"iv":"', pybase64.b64encode(iv), b'","ciphertext":"',
                     pybase64.b64encode(ciphertext), b'"}'))


def open_json(key: bytes, envelope: object) -> tuple[bytes, dict[str, object]]:
    """Returns ``(iv, obj)`` where the plaintext must be UTF-8 JSON text of an object.

    Raises EnvelopeError like open_envelope, also for non-object or non-JSON plaintext
    (NaN and Infinity included: they are not JSON). A dict ``envelope`` is emptied
    once decrypted: for an upload chunk its ~15 MB ciphertext text is then freed
    before the plaintext is parsed (the caller parsed it and keeps no other use).
    """
    iv, plaintext = open_envelope(key, envelope)
    if isinstance(envelope, dict):
        envelope.clear()
    return iv, parse_object(plaintext)


def parse_object(plaintext: bytes | bytearray, *, size: int | None = None,
                 ) -> dict[str, object]:
    """The JSON object that UTF-8 ``plaintext`` holds; EnvelopeError for anything else.

    ``size``: of the plaintext this text stands for, which picks the parser
    (``inplace`` parses a big plaintext without its big string).
    """
    try:
        obj = _loads(plaintext, len(plaintext) if size is None else size)
    except (ValueError, RecursionError):
        raise PlaintextError(PLAINTEXT_NOT_JSON) from None
    if not isinstance(obj, dict):
        raise PlaintextError(PLAINTEXT_NOT_OBJECT)
    return obj


FAST_JSON_BYTES = 1024 * 1024


def _loads(plaintext: bytes | bytearray, size: int) -> object:
    """Exact stdlib parsing for ordinary bodies; orjson for big ones (upload chunks).

    orjson is ~4x faster on an 11 MB chunk but reads integers beyond 64 bits as
    floats; no field of ours accepts such a number (validators want ``int``), so on
    big bodies that only turns a refusal's wording from "not JSON" into "not an
    integer". Both refuse NaN, Infinity and invalid UTF-8.
    """
    if size >= FAST_JSON_BYTES:
        return orjson.loads(plaintext)
    return json.loads(plaintext.decode("utf-8"), parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> object:
    raise ValueError(name)
