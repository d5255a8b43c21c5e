"""Secrets at rest: the key file and sealed texts."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sealskin.crypto import CryptoError
from sealskin.crypto.secretbox import SecretKeeper


def test_key_file_is_created_0600_and_reused(tmp_path: Path) -> None:
    path = str(tmp_path / "secret.key")
    sealed = SecretKeeper.load_or_create(path).seal("pässword")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.path.getsize(path) == 32
    assert SecretKeeper.load_or_create(path).open(sealed) == "pässword"
    assert os.listdir(tmp_path) == ["secret.key"]


@pytest.mark.parametrize("size", [0, 31, 33])
def test_wrong_size_key_file_is_refused(tmp_path: Path, size: int) -> None:
    path = tmp_path / "secret.key"
    path.write_bytes(b"k" * size)
    with pytest.raises(CryptoError, match="32 bytes"):
        SecretKeeper.load_or_create(str(path))


def test_tampered_or_foreign_blobs_are_refused(tmp_path: Path) -> None:
    keeper = SecretKeeper(os.urandom(32))
    sealed = bytearray(keeper.seal("secret"))
    sealed[-1] ^= 1
    for blob in (bytes(sealed), b"", b"short", SecretKeeper(os.urandom(32)).seal("secret")):
        with pytest.raises(CryptoError, match="does not decrypt"):
            keeper.open(blob)


def test_each_seal_uses_a_new_nonce() -> None:
    keeper = SecretKeeper(os.urandom(32))
    assert keeper.seal("x") != keeper.seal("x")
