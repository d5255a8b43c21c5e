"""In-memory crypto sessions and the handshake rate limiter (upstream-protocol 2.8, 2.11).

Crypto sessions expire when idle and are capped in number (least recently used go
first), but a new handshake never invalidates another one: the extension handshakes
in parallel and may still have requests in flight under an earlier key. Everything
here is O(1) per call; the clock is any object with ``seconds()`` (an IReactorTime).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict, deque
from typing import Protocol


class Clock(Protocol):
    def seconds(self) -> float: ...


class _Session:
    __slots__ = ("key", "created", "touched", "seen", "order")

    def __init__(self, key: bytes, now: float) -> None:
        self.key = key
        self.created = now
        self.touched = now
        self.seen: set[bytes] = set()
        self.order: deque[bytes] = deque()


class CryptoSessions:
    """Session id -> AES key, with idle expiry, an LRU cap and per-session IV replay memory.

    Sessions younger than ``fresh_seconds`` sit in a separate creation-ordered queue and
    are evicted only when no older session is left; when they come of age they join the
    LRU order as if used at that moment. Idle time counts from the real last use.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        idle_seconds: float,
        max_sessions: int,
        replay_window: int = 4096,
        fresh_seconds: float = 10.0,
    ) -> None:
        if max_sessions < 1 or replay_window < 1 or idle_seconds <= 0:
            raise ValueError("CryptoSessions needs positive limits.")
        self._clock = clock
        self._idle_seconds = idle_seconds
        self._max_sessions = max_sessions
        self._replay_window = replay_window
        # A fresh session must not expire while protected, or expiry would need a scan.
        self._fresh_seconds = min(fresh_seconds, idle_seconds)
        self._fresh: OrderedDict[str, _Session] = OrderedDict()  # by creation
        self._aged: OrderedDict[str, _Session] = OrderedDict()  # least recently used first

    def __len__(self) -> int:
        return len(self._fresh) + len(self._aged)

    def add(self, key: bytes) -> str:
        """Stores a session key; returns its new id (canonical lowercase uuid4)."""
        now = self._now()
        while len(self) >= self._max_sessions:
            victims = self._aged or self._fresh
            victims.popitem(last=False)
        session_id = str(uuid.uuid4())
        self._fresh[session_id] = _Session(key, now)
        return session_id

    def get(self, session_id: str) -> bytes | None:
        """The key of a live session, marking it used; None if unknown or idle too long."""
        now = self._now()
        session = self._fresh.get(session_id)
        if session is None:
            session = self._aged.get(session_id)
            if session is None:
                return None
            if now - session.touched > self._idle_seconds:
                del self._aged[session_id]
                return None
            self._aged.move_to_end(session_id)
        session.touched = now
        return session.key

    def note_iv(self, session_id: str, iv: bytes) -> bool:
        """Records an IV used in a session; False if it was seen before (a replay) or the
        session is unknown. Only the last ``replay_window`` IVs are remembered."""
        session = self._fresh.get(session_id) or self._aged.get(session_id)
        if session is None or iv in session.seen:
            return False
        if len(session.order) >= self._replay_window:
            session.seen.discard(session.order.popleft())
        session.seen.add(iv)
        session.order.append(iv)
        return True

    def sweep(self) -> int:
        """Drops idle sessions (call from a timer); returns how many went.

        Stops at the first live session in LRU order, so a session that came of age
        unused may outlive its idle time by up to ``fresh_seconds`` here; ``get`` is exact.
        """
        now = self._now()
        dropped = 0
        while self._aged:
            session = next(iter(self._aged.values()))
            if now - session.touched <= self._idle_seconds:
                break
            self._aged.popitem(last=False)
            dropped += 1
        return dropped

    def _now(self) -> float:
        """The time, after moving sessions that have come of age into the LRU order."""
        now = self._clock.seconds()
        while self._fresh:
            session_id, session = next(iter(self._fresh.items()))
            come_of_age = session.created + self._fresh_seconds
            if come_of_age > now:
                break
            del self._fresh[session_id]
            self._aged[session_id] = session
        return now


class _Bucket:
    __slots__ = ("tokens", "updated")

    def __init__(self, tokens: float, updated: float) -> None:
        self.tokens = tokens
        self.updated = updated


class RateLimiter:
    """A token bucket per client address; at most ``max_clients`` buckets, LRU dropped.

    A dropped bucket comes back full, so the cap should exceed the number of clients
    expected within ``burst / per_second`` seconds.
    """

    def __init__(
        self, clock: Clock, *, per_second: float, burst: int, max_clients: int = 10000
    ) -> None:
        if per_second <= 0 or burst < 1 or max_clients < 1:
            raise ValueError("RateLimiter needs positive limits.")
        self._clock = clock
        self._per_second = per_second
        self._burst = float(burst)
        self._max_clients = max_clients
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def allow(self, address: str) -> bool:
        """Takes one token for ``address``; False when its bucket is empty."""
        now = self._clock.seconds()
        bucket = self._buckets.pop(address, None)
        if bucket is None:
            bucket = _Bucket(self._burst, now)
            if len(self._buckets) >= self._max_clients:
                self._buckets.popitem(last=False)
        elapsed = max(0.0, now - bucket.updated)  # a clock stepping back refills nothing
        bucket.tokens = min(self._burst, bucket.tokens + elapsed * self._per_second)
        bucket.updated = now
        self._buckets[address] = bucket
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True
