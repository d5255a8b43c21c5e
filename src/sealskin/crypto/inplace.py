"""Big request envelopes opened inside their own buffer (upload chunks).

An 8 MiB upload chunk arrives as a ~15 MB envelope: base64 of AES-GCM of the JSON
text ``{"upload_id", "chunk_index", "chunk_data_b64"}`` (upstream-protocol 2.3, 4.6).
Parsed the ordinary way it turns into five big objects in turn (body, ciphertext
text, ciphertext, plaintext, chunk text: ~60 MB and as many page faults per
request). Here the body's buffer is reused: the ciphertext is base64-decoded into
its own front, decrypted where it lies, and one big base64 member named by the
route is left there as :class:`Base64Text`, to be decoded where it lies too.

The fast path takes only the compact shape the extension sends (upstream 2.9:
``{"iv":"...","ciphertext":"..."}``, no escapes). Anything else goes the ordinary
way, so every body gets exactly the answer :func:`envelope.open_json` gives.
CPU work: callers run it on a pool thread (base64 and AES release the GIL).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import orjson
import pybase64
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from sealskin.crypto import EnvelopeError
from sealskin.crypto.envelope import (DECRYPT_FAILED, FAST_JSON_BYTES, IV_BYTES, TAG_BYTES,
                                      b64decode_strict, open_json, parse_object)

# A multiple of 4 (whole base64 groups). Blocks of 1 MiB were mapped and faulted in
# afresh each time (malloc's mmap threshold is 128 KiB): 6x the page faults, half the
# throughput of 64 KiB blocks in bench/upload_bench.py.
BLOCK_BYTES = 64 * 1024
_HEAD = b'{"iv":"'
_MIDDLE = b'","ciphertext":"'
_TAIL = b'"}'
_PREFIX_BYTES = 4096  # how far into the plaintext the big member's name is looked for


class Base64Text:
    """A JSON string member left in the request buffer; known to be strict base64.

    ``len()`` is its length in characters, as for the ``str`` it stands for.
    """

    __slots__ = ("_buf", "_start", "_stop", "_block_bytes", "_decoded")

    def __init__(self, buf: bytearray, start: int, stop: int, block_bytes: int) -> None:
        self._buf, self._start, self._stop = buf, start, stop
        self._block_bytes = block_bytes
        self._decoded: memoryview | None = None

    def __len__(self) -> int:
        return self._stop - self._start

    def decode(self) -> memoryview:
        """The bytes, decoded where the text lies (once: the text is gone after). CPU work."""
        if self._decoded is None:
            size = _b64decode_into(self._buf, self._start, self._stop, self._start,
                                   self._block_bytes)
            self._decoded = memoryview(self._buf)[self._start:self._start + size]
        return self._decoded


def open_in_place(key: bytes, buf: bytearray, member: str | None = None, *,
                  block_bytes: int = BLOCK_BYTES, member_bytes: int = FAST_JSON_BYTES,
                  ) -> tuple[bytes, dict[str, object]]:
    """``(iv, obj)`` as :func:`envelope.open_json` gives for the JSON text ``buf``.

    ``buf`` is consumed (overwritten). ``member`` names a top-level string member
    that, when it has ``member_bytes`` or more and is strict base64, is handed over
    as :class:`Base64Text`. Raises EnvelopeError for everything open_json refuses.
    ``block_bytes`` (a multiple of 4) bounds each temporary copy.
    """
    spans = _envelope_spans(buf)
    if spans is None:
        try:
            wrapped = orjson.loads(buf)
        except ValueError:
            raise EnvelopeError(DECRYPT_FAILED) from None
        del buf[:]
        return open_json(key, wrapped)
    (iv_start, iv_stop), (start, stop) = spans
    iv = b64decode_strict(buf[iv_start:iv_stop].decode("latin-1"))
    size = _b64decode_into(buf, start, stop, 0, block_bytes)
    if len(iv) != IV_BYTES or size < TAG_BYTES:
        raise EnvelopeError(DECRYPT_FAILED)
    del buf[_decrypt_in_place(key, iv, buf, size, block_bytes):]
    span = _big_member(buf, member, block_bytes, member_bytes) if member else None
    obj = _parse_without(buf, span, member) if span and member else None
    if obj is None or span is None or member is None:
        return iv, parse_object(buf)
    obj[member] = Base64Text(buf, *span, block_bytes)
    return iv, obj


def _envelope_spans(buf: bytearray) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """Where the iv and ciphertext texts lie, if ``buf`` is exactly the compact shape
    without escapes (so each text is the JSON string's value byte for byte)."""
    if not buf.startswith(_HEAD) or not buf.endswith(_TAIL):
        return None
    iv_start = len(_HEAD)
    iv_stop = buf.find(b'"', iv_start, iv_start + 64)
    if iv_stop < 0 or not buf.startswith(_MIDDLE, iv_stop):
        return None
    start, stop = iv_stop + len(_MIDDLE), len(buf) - len(_TAIL)
    if start > stop or buf.find(b'"', start, stop) >= 0 or buf.find(b"\\", 0, stop) >= 0:
        return None
    return (iv_start, iv_stop), (start, stop)


def _b64_blocks(buf: bytearray, start: int, stop: int, block_bytes: int) -> Iterator[bytes]:
    """Decodes ``buf[start:stop]`` block by block, exactly as ``b64decode_strict`` would
    the whole text (missing padding tolerated, ``=`` only at the end); EnvelopeError."""
    view = memoryview(buf)
    try:
        for at in range(start, stop, block_bytes):
            end = min(at + block_bytes, stop)
            if end < stop:
                if buf[end - 1] == ord("="):  # padding that is not at the very end
                    raise EnvelopeError(DECRYPT_FAILED)
                yield _b64decode(view[at:end])
            else:
                yield b64decode_strict(str(view[at:end], "latin-1"))
    finally:
        view.release()


def _b64decode(piece: memoryview) -> bytes:
    try:
        return pybase64.b64decode(piece, validate=True)
    except ValueError:  # binascii.Error is one
        raise EnvelopeError(DECRYPT_FAILED) from None


def _b64decode_into(buf: bytearray, start: int, stop: int, to: int, block_bytes: int) -> int:
    """Decodes ``buf[start:stop]`` to ``buf[to:]`` (``to <= start``: writes trail reads);
    returns the decoded size."""
    written = to
    for piece in _b64_blocks(buf, start, stop, block_bytes):
        buf[written:written + len(piece)] = piece
        written += len(piece)
    return written - to


def _decrypt_in_place(key: bytes, iv: bytes, buf: bytearray, size: int, block_bytes: int,
                      ) -> int:
    """AES-256-GCM of ``buf[:size]`` (ciphertext || tag) decrypted to ``buf[:size-16]``;
    returns the plaintext size. The plaintext counts only once the tag verified."""
    end = size - TAG_BYTES
    view = memoryview(buf)
    try:
        decryptor = Cipher(algorithms.AES(key), modes.GCM(iv, bytes(view[end:size]))).decryptor()
        written = 0
        for at in range(0, end, block_bytes):
            piece = decryptor.update(view[at:min(at + block_bytes, end)])
            view[written:written + len(piece)] = piece
            written += len(piece)
        piece = decryptor.finalize()
        view[written:written + len(piece)] = piece
    except (InvalidTag, ValueError):
        raise EnvelopeError(DECRYPT_FAILED) from None
    finally:
        view.release()
    return written + len(piece)


def _big_member(buf: bytearray, member: str, block_bytes: int, member_bytes: int,
                ) -> tuple[int, int] | None:
    """Where the text of ``"member":"..."`` lies, when it has at least ``member_bytes``
    characters and is strict base64 (so it holds no quote or backslash)."""
    name = b'"' + member.encode() + b'":"'
    at = buf.find(name, 0, _PREFIX_BYTES)
    if at < 0:
        return None
    start = at + len(name)
    stop = buf.find(b'"', start)
    if stop - start < member_bytes:
        return None
    try:
        for _ in _b64_blocks(buf, start, stop, block_bytes):
            pass
    except EnvelopeError:  # not base64: the ordinary way answers 400 or 422 as it should
        return None
    return start, stop


def _parse_without(buf: bytearray, span: tuple[int, int], member: str,
                   ) -> dict[str, object] | None:
    """The plaintext parsed with a random stand-in for the text at ``span``; None unless
    that text is the value of ``member`` in the top-level object (the last one, if
    the name repeats: JSON parsers keep the last).

    The stand-in is hex, the text base64: neither holds a quote or a backslash, so
    both texts are read alike, up to that one string's value (same parser as the
    ordinary path, chosen by the plaintext's size). Any doubt: the ordinary path.
    """
    stand_in = secrets.token_hex(16)
    rest = bytes(buf[:span[0]]) + stand_in.encode() + bytes(buf[span[1]:])
    try:
        obj = parse_object(rest, size=len(buf))
    except EnvelopeError:
        return None
    return obj if obj.get(member) == stand_in else None


__all__ = ["BLOCK_BYTES", "Base64Text", "open_in_place"]
