"""Handlers: launch, list and stop sessions (upstream-protocol 4.3, 4.4, 4.11)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sealskin import authz
from sealskin.api import wire
from sealskin.api.edge import Call
from sealskin.errors import ApiError, Kind
from sealskin.model import SessionRecord
from sealskin.orchestration.launching import LANGUAGE_RE, LaunchPlan, LaunchRequest, Planner
from sealskin.orchestration.principals import Principals
from sealskin.orchestration.sessions import Sessions

MAX_URL_CHARS = 8192


def launch_request(body: Any, *, with_url: bool) -> LaunchRequest:
    home = body.get("home_name")
    if home is not None and not isinstance(home, str):
        raise wire.invalid("'home_name' must be a string or null.")
    language = wire.string(body, "language", max_len=64, optional=True)
    if language and not LANGUAGE_RE.fullmatch(language):
        raise wire.invalid("'language' must look like en_US.UTF-8.")
    url = None
    if with_url:
        url = wire.string(body, "url", max_len=MAX_URL_CHARS)
        if not url or not url.startswith(("http://", "https://")):
            raise wire.invalid("'url' must be an http(s) URL.")
    return LaunchRequest(
        application_id=wire.name(body.get("application_id"), "application_id"),
        home_name=home or None,
        language=language or None,
        selected_gpu=wire.string(body, "selected_gpu", max_len=256, optional=True) or None,
        url=url,
        wayland_mode=wire.boolean(body, "wayland_mode", True),
    )


class SessionHandlers:
    def __init__(self, sessions: Sessions, planner: Planner, principals: Principals, *,
                 default_limit: int) -> None:
        self._sessions = sessions
        self._planner = planner
        self._principals = principals
        self._default_limit = default_limit

    async def _launch(self, call: Call, req: LaunchRequest) -> wire.Json:
        return await self.launch_prepared(call, req, None)

    async def launch_prepared(self, call: Call, req: LaunchRequest,
                              prepare: Callable[[LaunchPlan], Awaitable[LaunchPlan]] | None,
                              *, customize: bool = False) -> wire.Json:
        """Plans, lets ``prepare`` adjust the plan (e.g. place a file), then launches.

        If ``prepare`` or the launch fails, the plan's own cleanup runs.
        """
        settings = await self._principals.effective(call.caller)
        plan = await self._planner.plan(call.caller, settings, req, customize=customize)
        limit = authz.session_limit(settings, self._default_limit)
        try:
            if prepare is not None:
                plan = await prepare(plan)
        except BaseException:
            await _cleanup(plan)
            raise
        try:
            sid, url = await self._sessions.launch(call.caller, plan, limit)
        except ApiError:  # e.g. LIMITED before the launch began; a cancel leaves it running
            await _cleanup(plan)
            raise
        # The account may have been deactivated or removed (directly or through its group)
        # while the container started: that change ended the sessions it could see.
        now = await self._principals.get(call.caller.username)
        if now is None or not (await self._principals.effective(now)).active:
            await self._sessions.end_all_of(call.caller.username)
            raise ApiError(Kind.FORBIDDEN, "The account was deactivated during the launch.")
        return {"session_url": url, "session_id": sid}

    async def launch_simple(self, call: Call) -> wire.Json:
        return await self._launch(call, launch_request(call.body, with_url=False))

    async def launch_url(self, call: Call) -> wire.Json:
        return await self._launch(call, launch_request(call.body, with_url=True))

    async def customize_meta(self, call: Call) -> wire.Json:
        """The app lab (admin): a session whose home is a meta app's template (4.10)."""
        req = launch_request({**call.body, "home_name": None}, with_url=False)
        return await self.launch_prepared(call, req, None, customize=True)

    def _info(self, r: SessionRecord) -> wire.Json:
        """``ActiveSessionInfo``; each listing carries a fresh single-use URL."""
        return {
            "session_id": r.id, "app_id": r.app_id, "app_name": r.app_name,
            "app_logo": r.app_logo, "created_at": r.created_at,
            "session_url": self._sessions.session_url(r.id),
            "launch_context": dict(r.launch_context) if r.launch_context else None,
            "is_collaboration": False,
        }

    async def list_mine(self, call: Call) -> list[wire.Json]:
        return [self._info(r) for r in self._sessions.visible(call.caller)]

    async def stop_mine(self, call: Call, session_id: str) -> None:
        await self._sessions.stop(call.caller, _sid(session_id))

    async def list_all(self, call: Call) -> list[wire.Json]:
        by_user: dict[str, list[wire.Json]] = {}
        for r in self._sessions.visible(None):
            by_user.setdefault(r.username, []).append(self._info(r))
        return [{"username": u, "sessions": s} for u, s in sorted(by_user.items())]

    async def stop_any(self, call: Call, session_id: str) -> None:
        await self._sessions.stop(None, _sid(session_id))


async def _cleanup(plan: LaunchPlan) -> None:
    if plan.cleanup is not None:
        await plan.cleanup()


def _sid(session_id: str) -> str:
    if len(session_id) > 64:
        raise ApiError(Kind.NOT_FOUND, "Session not found or permission denied.")
    return session_id
