"""Session cookies: HMAC over (session, nonce); one session only; tamper-evident."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sealskin.crypto import cookies

KEY = os.urandom(32)


def test_a_cookie_opens_its_own_session_only() -> None:
    value = cookies.issue(KEY, "a")
    assert cookies.valid(KEY, "a", value)
    assert not cookies.valid(KEY, "b", value)
    assert not cookies.valid(os.urandom(32), "a", value)


@pytest.mark.parametrize("forged", ["", ".", "abc", "abc.", ".abc", "x" * 300])
def test_malformed_values_are_refused(forged: str) -> None:
    assert not cookies.valid(KEY, "a", forged)


def test_any_changed_character_is_refused() -> None:
    value = cookies.issue(KEY, "a")
    for i in range(len(value)):
        changed = value[:i] + ("A" if value[i] != "A" else "B") + value[i + 1:]
        assert not cookies.valid(KEY, "a", changed)


def test_two_cookies_differ_and_the_key_is_private_and_kept(tmp_path: Path) -> None:
    assert cookies.issue(KEY, "a") != cookies.issue(KEY, "a")
    path = str(tmp_path / "cookie.key")
    key = cookies.load_or_create_key(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert cookies.load_or_create_key(path) == key
