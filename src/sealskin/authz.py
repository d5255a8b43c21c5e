"""Pure policy: effective settings and who may see what. No I/O."""

from __future__ import annotations

import attrs

from sealskin.model import Group, InstalledApp, Principal, UserSettings

ADMIN_SETTINGS = UserSettings()  # upstream-protocol 5.4: admins get the defaults


def effective_settings(p: Principal, group: Group | None) -> UserSettings:
    """The user's settings with their group's overlaid (upstream-protocol 5.5).

    Every group key wins except ``group`` itself: membership is the user's own
    ``group`` (the upstream overwrote it with ``"none"``, breaking assignment, R8),
    and ``active``: a deactivated user stays deactivated whatever the group says.
    """
    if p.is_admin or p.settings is None:
        return ADMIN_SETTINGS
    own = p.settings
    if group is None or own.group in ("", "none") or group.name != own.group:
        return own
    return attrs.evolve(group.settings, group=own.group,
                        active=own.active and group.settings.active)


def session_limit(settings: UserSettings, default_limit: int) -> int:
    """Concurrent sessions allowed; a non-positive setting means the server default."""
    return settings.session_limit if settings.session_limit > 0 else default_limit


def may_launch(p: Principal, app: InstalledApp) -> bool:
    """App visibility (upstream-protocol 4.2) using the user's own group (R8)."""
    if p.is_admin:
        return True
    if "all" in app.users or p.username in app.users or "all" in app.groups:
        return True
    group = p.settings.group if p.settings else "none"
    return group not in ("", "none") and group in app.groups
