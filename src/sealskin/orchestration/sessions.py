"""Sessions: launch, list, stop, reap, reconcile; and the proxy's SessionDirectory.

Live sessions are held in memory (routes, cookie digests, pending URL tokens)
and persisted in the store (credentials sealed with SecretBox), so a restarted
server adopts running containers and old cookies keep working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs
from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from sealskin import authz
from sealskin.crypto import cookies
from sealskin.errors import ApiError, Kind
from sealskin.model import InstalledApp, Principal, SessionRecord, SessionRoute
from sealskin.orchestration.launching import LaunchPlan
from sealskin.orchestration.ops import Operations, shielded
from sealskin.providers import Instance, LaunchSpec, Provider, ProviderError
from sealskin.store import Store

log = Logger()

MAX_TOKENS_PER_SESSION = 8
NOT_FOUND = "Session not found or permission denied."


class Readiness(Protocol):
    async def wait(self, host: str, port: int, path: str, authorization: str, *,
                   timeout_seconds: float) -> float: ...


class Sealer(Protocol):
    def seal(self, text: str) -> bytes: ...
    def open(self, blob: bytes) -> str: ...


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


@attrs.define
class _Live:
    record: SessionRecord
    route: SessionRoute
    tokens: dict[str, float] = attrs.field(factory=dict)  # digest -> expiry
    last_seen: float = 0.0


@attrs.frozen
class Limits:
    launch_timeout_seconds: float = 60
    token_ttl_seconds: float = 120
    idle_seconds: float = 3600
    max_seconds: float = 86400
    default_session_limit: int = 10
    stop_grace_seconds: float = 5


class Sessions:
    """Owns every session's lifecycle. Implements ``proxy.SessionDirectory``."""

    def __init__(self, store: Store, provider: Provider, readiness: Readiness,
                 sealer: Sealer, clock: IReactorTime, limits: Limits, *,
                 cookie_key: bytes) -> None:
        self._cookie_key = cookie_key
        self._start_callbacks: list[Callable[[SessionRoute], None]] = []
        self._store = store
        self._provider = provider
        self._readiness = readiness
        self._sealer = sealer
        self._clock = clock
        self._limits = limits
        self._live: dict[str, _Live] = {}
        self._reserved: Counter[str] = Counter()  # launches in progress, per user
        self._end_callbacks: list[Callable[[str], None]] = []
        self.ops = Operations()

    # -- SessionDirectory (called by the proxy; memory only but redeem) -------

    def route(self, session_id: str) -> SessionRoute | None:
        live = self._live.get(session_id)
        return live.route if live else None

    async def redeem(self, session_id: str, access_token: str) -> str | None:
        live = self._live.get(session_id)
        if live is None:
            return None
        now = self._clock.seconds()
        offered = _digest(access_token)
        match = None
        for digest, expiry in list(live.tokens.items()):
            if expiry < now:
                del live.tokens[digest]
            elif hmac.compare_digest(digest, offered):
                match = digest
        if match is None:
            return None
        del live.tokens[match]  # single use
        return cookies.issue(self._cookie_key, session_id)

    def admit(self, session_id: str, cookie_value: str) -> bool:
        """A cookie issued for this live session (HMAC: survives restarts, names one
        session, and any proxy process holding the key can check it)."""
        return (session_id in self._live
                and cookies.valid(self._cookie_key, session_id, cookie_value))

    def touch(self, session_id: str) -> None:
        live = self._live.get(session_id)
        if live is not None:
            live.last_seen = self._clock.seconds()

    def on_session_end(self, callback: Callable[[str], None]) -> None:
        self._end_callbacks.append(callback)

    def on_session_start(self, callback: Callable[[SessionRoute], None]) -> None:
        """Registers ``callback(route)``, called when a session becomes routable."""
        self._start_callbacks.append(callback)

    def routes(self) -> list[SessionRoute]:
        return [live.route for live in self._live.values()]

    # -- queries ---------------------------------------------------------------

    def session_url(self, session_id: str) -> str:
        """A fresh single-use URL for a live session (upstream-protocol 4.3, 7.1)."""
        live = self._live[session_id]
        token = secrets.token_urlsafe(32)
        live.tokens[_digest(token)] = self._clock.seconds() + self._limits.token_ttl_seconds
        while len(live.tokens) > MAX_TOKENS_PER_SESSION:
            del live.tokens[next(iter(live.tokens))]
        return f"/{session_id}/?access_token={token}"

    def visible(self, caller: Principal | None) -> list[SessionRecord]:
        """Live sessions of ``caller`` (all of them for ``None``), newest first."""
        found = [live.record for live in self._live.values()
                 if caller is None or live.record.username == caller.username]
        return sorted(found, key=lambda r: r.created_at, reverse=True)

    def count(self, username: str) -> int:
        return sum(1 for live in self._live.values() if live.record.username == username)

    # -- launch ------------------------------------------------------------------

    async def launch(self, caller: Principal, plan: LaunchPlan, limit: int) -> tuple[str, str]:
        """Starts a session; returns (session_id, session_url).

        Safe to cancel: the launch itself is owned here and finishes (or cleans
        up) without its caller. LIMITED if the caller is at ``limit``.
        """
        user = caller.username
        if self.count(user) + self._reserved[user] >= limit:
            raise ApiError(Kind.LIMITED, f"Session limit reached ({limit}).")
        self._reserved[user] += 1
        op = self.ops.run(self._launch(caller, plan))

        def release(result: object) -> object:
            self._reserved[user] -= 1
            if self._reserved[user] <= 0:
                del self._reserved[user]
            return result

        _ = op.addBoth(release)
        sid: str = await shielded(op)
        return sid, self.session_url(sid)

    async def _launch(self, caller: Principal, plan: LaunchPlan) -> str:
        sid = plan.session_id
        credentials = f"{uuid.uuid4().hex}:{secrets.token_urlsafe(24)}"
        user, password = credentials.split(":", 1)
        record = SessionRecord(
            id=sid, username=caller.username, app_id=plan.app.id, app_name=plan.app.name,
            app_logo=plan.app.logo, instance_id="", host="", port=plan.spec.port,
            created_at=self._clock.seconds(), sealed_credentials=self._sealer.seal(credentials),
            launch_context=plan.launch_context, home_path=plan.home_path,
            ephemeral=plan.ephemeral, state="starting")
        await self._store.add_session(record)  # first: a crash now leaves a findable record
        spec = attrs.evolve(plan.spec, env={**plan.spec.env, "CUSTOM_USER": user,
                                             "PASSWORD": password})
        instance: Instance | None = None
        step = "pull"
        try:
            started = self._clock.seconds()
            await self._provider.pull(spec.image, policy=spec.pull_policy)
            pulled = self._clock.seconds()
            step = "create"
            instance = await self._provider.start(attrs.evolve(spec, pull_policy="never"))
            created = self._clock.seconds()
            step = "readiness"
            waited = await self._readiness.wait(
                instance.host, instance.port, f"/{sid}/", _basic(credentials),
                timeout_seconds=self._limits.launch_timeout_seconds)
            record = attrs.evolve(record, instance_id=instance.instance_id,
                                  host=instance.host, state="running")
            await self._store.set_session(record)
        except BaseException as e:
            await self._undo(sid, instance, plan)
            if isinstance(e, CancelledError):
                raise
            raise _launch_error(e, step) from None
        self._adopt(record, credentials)
        log.info("session {session_id} of {user} ready in {seconds:.1f}s ({wait:.1f}s "
                 "readiness)", session_id=sid, user=caller.username,
                 seconds=self._clock.seconds() - started, wait=waited,
                 pull_seconds=pulled - started, start_seconds=created - pulled)
        return sid

    async def _undo(self, sid: str, instance: Instance | None, plan: LaunchPlan) -> None:
        """Removes everything a failed launch created; never raises."""
        try:
            if instance is not None:
                await self._provider.stop(instance.instance_id,
                                          grace_seconds=self._limits.stop_grace_seconds)
            await self._store.remove_session(sid)
            if plan.cleanup is not None:
                await plan.cleanup()
        except CancelledError:
            raise
        except Exception:
            log.failure("cleaning up failed launch {session_id}", session_id=sid)

    def _adopt(self, record: SessionRecord, credentials: str) -> None:
        route = SessionRoute(record.id, record.host, record.port, _basic(credentials))
        self._live[record.id] = _Live(record, route, last_seen=self._clock.seconds())
        for callback in self._start_callbacks:
            callback(route)

    # -- stop, reap, reconcile ---------------------------------------------------

    async def stop(self, caller: Principal | None, session_id: str) -> None:
        """Ends a session; ``caller=None`` is an admin. NOT_FOUND if not visible."""
        live = self._live.get(session_id)
        if live is None or (caller is not None and live.record.username != caller.username):
            raise ApiError(Kind.NOT_FOUND, NOT_FOUND)
        await shielded(self.ops.run(self._end(session_id, "stopped")))

    async def end_all_of(self, username: str) -> int:
        """Ends every session of ``username`` (removed or deactivated); returns how many."""
        mine = [sid for sid, live in self._live.items() if live.record.username == username]
        for sid in mine:
            await shielded(self.ops.run(self._end(sid, "account removed or deactivated")))
        return len(mine)

    async def _end(self, session_id: str, reason: str) -> None:
        live = self._live.pop(session_id, None)
        if live is None:
            return
        for callback in self._end_callbacks:
            callback(session_id)
        try:
            await self._provider.stop(live.record.instance_id,
                                      grace_seconds=self._limits.stop_grace_seconds)
        except ProviderError:
            log.failure("stopping container of session {session_id}", session_id=session_id)
        await self._store.remove_session(session_id)
        if self.on_ended is not None:
            await self.on_ended(live.record)
        log.info("session {session_id} ended ({reason})", session_id=session_id, reason=reason)

    on_ended: Callable[[SessionRecord], Any] | None = None  # e.g. remove ephemeral homes

    async def reap(self) -> None:
        """Stops idle sessions and those past their maximum lifetime."""
        now = self._clock.seconds()
        lim = self._limits
        for sid, live in list(self._live.items()):
            if lim.idle_seconds and now - live.last_seen > lim.idle_seconds:
                await self.ops.run(self._end(sid, "idle"))
            elif lim.max_seconds and now - live.record.created_at > lim.max_seconds:
                await self.ops.run(self._end(sid, "maximum lifetime"))

    async def reconcile(self) -> bool:
        """Adopts running sessions, ends records without a container, removes unknown
        labelled containers. Returns False (and deletes nothing) if the provider is
        unreachable, so the caller retries."""
        try:
            found = {i.session_id: i for i in await self._provider.managed()}
        except ProviderError as e:
            if e.unavailable:
                log.warn("Docker is unreachable; reconciliation will be retried")
                return False
            raise
        for record in await self._store.sessions():
            inst = found.pop(record.id, None)
            if record.id in self._live:
                continue
            if inst is not None and inst.running and record.state == "running":
                record = attrs.evolve(record, host=inst.host, instance_id=inst.instance_id)
                self._adopt(record, self._sealer.open(record.sealed_credentials))
                log.info("adopted running session {session_id}", session_id=record.id)
                continue
            if inst is not None:
                await self._provider.stop(inst.instance_id,
                                          grace_seconds=self._limits.stop_grace_seconds)
            await self._store.remove_session(record.id)
            if self.on_ended is not None:
                await self.on_ended(record)
            log.info("ended session {session_id}: its container is gone", session_id=record.id)
        for inst in found.values():
            if inst.session_id not in self._live:
                log.info("removing unknown container {instance_id}", instance_id=inst.instance_id)
                await self._provider.stop(inst.instance_id,
                                          grace_seconds=self._limits.stop_grace_seconds)
        return True

    async def close_all_views(self) -> None:
        """At shutdown: waits for owned launches and stops (containers keep running)."""
        await self.ops.drain()


def _launch_error(e: BaseException, step: str) -> ApiError:
    if isinstance(e, ApiError):
        return e
    if isinstance(e, ProviderError):
        if e.unavailable:
            return ApiError(Kind.UNAVAILABLE, "Docker is unreachable; try again shortly.")
        if e.step == "readiness" and "in time" in e.detail:
            return ApiError(Kind.TIMEOUT, "Container failed to become ready in time.")
        detail = e.detail.rstrip(".")
        return ApiError(Kind.BAD_GATEWAY, f"Launch failed at step '{e.step}': {detail}.")
    log.failure("launch failed at step {step}", step=step)
    return ApiError(Kind.INTERNAL, "internal error")


def visible_apps(caller: Principal, apps: Sequence[InstalledApp]) -> list[InstalledApp]:
    return [a for a in apps if authz.may_launch(caller, a)]


Env = Mapping[str, str]
_unused = LaunchSpec
