"""Crypto sessions (idle expiry, LRU cap, fresh-session protection, replay) and the rate limiter."""

from __future__ import annotations

import os
import uuid

import pytest

from sealskin.crypto.sessions import CryptoSessions, RateLimiter

DAY = 24 * 3600.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def seconds(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _sessions(
    clock: FakeClock, max_sessions: int = 100, idle_seconds: float = DAY, replay_window: int = 4096
) -> CryptoSessions:
    return CryptoSessions(
        clock, idle_seconds=idle_seconds, max_sessions=max_sessions, replay_window=replay_window
    )


def test_ids_are_canonical_uuid4_and_keys_come_back() -> None:
    keys = _sessions(FakeClock())
    key = os.urandom(32)
    sid = keys.add(key)
    assert str(uuid.UUID(sid)) == sid and uuid.UUID(sid).version == 4
    assert keys.get(sid) == key
    assert keys.get(str(uuid.uuid4())) is None and keys.get("junk") is None


def test_idle_crypto_session_expires() -> None:
    clock = FakeClock()
    keys = _sessions(clock)
    sid = keys.add(os.urandom(32))
    clock.advance(DAY + 1)
    assert keys.get(sid) is None
    assert len(keys) == 0


def test_use_keeps_a_session_alive() -> None:
    clock = FakeClock()
    keys = _sessions(clock)
    sid = keys.add(os.urandom(32))
    for _ in range(5):
        clock.advance(DAY - 1)
        assert keys.get(sid) is not None


def test_a_new_handshake_never_invalidates_earlier_sessions() -> None:
    keys = _sessions(FakeClock())
    first = keys.add(b"1" * 32)
    keys.add(b"2" * 32)
    assert keys.get(first) == b"1" * 32


def test_sweep_drops_only_idle_sessions() -> None:
    clock = FakeClock()
    keys = _sessions(clock, idle_seconds=100)
    old = [keys.add(os.urandom(32)) for _ in range(3)]
    clock.advance(60)
    kept = keys.add(os.urandom(32))
    keys.get(old[0])
    clock.advance(60)
    assert keys.sweep() == 2
    assert len(keys) == 2
    assert keys.get(old[0]) is not None and keys.get(kept) is not None


def test_cap_evicts_the_least_recently_used() -> None:
    clock = FakeClock()
    keys = _sessions(clock, max_sessions=3)
    a, b, c = (keys.add(os.urandom(32)) for _ in range(3))
    clock.advance(60)
    keys.get(a)
    keys.get(c)
    d = keys.add(os.urandom(32))
    assert len(keys) == 3
    assert keys.get(b) is None
    assert all(keys.get(s) is not None for s in (a, c, d))


def test_unused_sessions_of_age_are_evicted_before_recently_used_ones() -> None:
    clock = FakeClock()
    keys = _sessions(clock, max_sessions=2)
    a = keys.add(os.urandom(32))
    clock.advance(5)
    b = keys.add(os.urandom(32))
    clock.advance(100)
    keys.get(a)
    keys.add(os.urandom(32))
    assert keys.get(b) is None and keys.get(a) is not None


def test_fresh_sessions_are_not_evicted_while_older_ones_exist() -> None:
    clock = FakeClock()
    keys = _sessions(clock, max_sessions=3)
    old = keys.add(os.urandom(32))
    clock.advance(60)
    fresh = [keys.add(os.urandom(32)) for _ in range(2)]
    keys.get(old)  # most recently used, yet the only one old enough to go
    keys.add(os.urandom(32))
    assert keys.get(old) is None
    assert all(keys.get(s) is not None for s in fresh)


def test_when_all_are_fresh_the_oldest_fresh_goes() -> None:
    clock = FakeClock()
    keys = _sessions(clock, max_sessions=2)
    a = keys.add(os.urandom(32))
    b = keys.add(os.urandom(32))
    c = keys.add(os.urandom(32))
    assert keys.get(a) is None
    assert keys.get(b) is not None and keys.get(c) is not None


def test_replayed_iv_is_refused() -> None:
    keys = _sessions(FakeClock())
    sid = keys.add(os.urandom(32))
    other = keys.add(os.urandom(32))
    iv = os.urandom(12)
    assert keys.note_iv(sid, iv)
    assert not keys.note_iv(sid, iv)
    assert keys.note_iv(other, iv)  # another key: not a replay
    assert not keys.note_iv("unknown", os.urandom(12))


def test_replay_memory_is_bounded_per_session() -> None:
    keys = _sessions(FakeClock(), replay_window=4)
    sid = keys.add(os.urandom(32))
    ivs = [os.urandom(12) for _ in range(5)]
    assert all(keys.note_iv(sid, iv) for iv in ivs)
    assert keys.note_iv(sid, ivs[0])  # forgotten: the oldest of five
    assert not keys.note_iv(sid, ivs[4])


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        _sessions(FakeClock(), max_sessions=0)


def test_rate_limiter_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock, per_second=2, burst=3)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b")
    clock.advance(0.5)
    assert limiter.allow("a") and not limiter.allow("a")
    clock.advance(100)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]


def test_rate_limiter_ignores_a_clock_stepping_back() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock, per_second=1, burst=1)
    assert limiter.allow("a")
    clock.advance(-50)
    assert not limiter.allow("a")


def test_rate_limiter_memory_is_bounded() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock, per_second=1, burst=1, max_clients=2)
    assert limiter.allow("a") and limiter.allow("b")
    assert limiter.allow("c")  # drops a, the least recently seen
    assert not limiter.allow("c") and not limiter.allow("b")
    assert limiter.allow("a")  # came back with a full bucket
