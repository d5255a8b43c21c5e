"""Every API endpoint, in one list (paths and methods: upstream-protocol 4)."""

from __future__ import annotations

from typing import Any

import attrs

from sealskin.api.admin import AdminHandlers
from sealskin.api.apps import AppHandlers
from sealskin.api.edge import Access, Route
from sealskin.api.handshake import HandshakeHandlers
from sealskin.api.homes import HomeHandlers
from sealskin.api.sessions import SessionHandlers

PLAIN, USER, ADMIN = Access.PLAIN, Access.USER, Access.ADMIN


@attrs.frozen
class Handlers:
    handshake: HandshakeHandlers
    admin: AdminHandlers
    homes: HomeHandlers
    sessions: SessionHandlers
    apps: AppHandlers
    stores: Any = None  # api/stores.py (app stores, available apps, icons, updates)
    files: Any = None  # api/files.py (uploads, file manager, shares)


def routes(h: Handlers) -> list[Route]:
    a, hm = h.admin, h.homes
    found = [
        Route("POST", "/api/handshake/initiate", h.handshake.initiate, PLAIN),
        Route("POST", "/api/handshake/exchange", h.handshake.exchange, PLAIN),
        Route("POST", "/api/admin/status", a.status, USER),
        Route("POST", "/api/admin/data", a.data, ADMIN),
        Route("POST", "/api/admin/users", a.create_user, ADMIN),
        Route("PUT", "/api/admin/users/<username>", a.update_user, ADMIN),
        Route("DELETE", "/api/admin/users/<username>", a.delete_user, ADMIN),
        Route("POST", "/api/admin/admins", a.create_admin, ADMIN),
        Route("DELETE", "/api/admin/admins/<username>", a.delete_admin, ADMIN),
        Route("POST", "/api/admin/groups", a.create_group, ADMIN),
        Route("PUT", "/api/admin/groups/<group_name>", a.update_group, ADMIN),
        Route("DELETE", "/api/admin/groups/<group_name>", a.delete_group, ADMIN),
        Route("GET", "/api/homedirs", hm.list_mine, USER),
        Route("POST", "/api/homedirs", hm.create_mine, USER),
        Route("DELETE", "/api/homedirs/<home_name>", hm.delete_mine, USER),
        Route("GET", "/api/admin/users/<username>/homedirs", hm.list_of, ADMIN),
        Route("POST", "/api/admin/users/<username>/homedirs", hm.create_for, ADMIN),
        Route("DELETE", "/api/admin/users/<username>/homedirs/<home_name>", hm.delete_for,
              ADMIN),
        Route("GET", "/api/admin/admins/<username>/homedirs", hm.list_of_admin, ADMIN),
        Route("POST", "/api/admin/admins/<username>/homedirs", hm.create_for_admin, ADMIN),
        Route("DELETE", "/api/admin/admins/<username>/homedirs/<home_name>",
              hm.delete_for_admin, ADMIN),
    ]
    s, ap = h.sessions, h.apps
    found += [
        Route("POST", "/api/launch/simple", s.launch_simple, USER),
        Route("POST", "/api/launch/url", s.launch_url, USER),
        Route("GET", "/api/sessions", s.list_mine, USER),
        Route("DELETE", "/api/sessions/<session_id>", s.stop_mine, USER),
        Route("GET", "/api/admin/sessions", s.list_all, ADMIN),
        Route("DELETE", "/api/admin/sessions/<session_id>", s.stop_any, ADMIN),
        Route("POST", "/api/applications", ap.launchable, USER),
        Route("GET", "/api/admin/apps/installed", ap.installed, ADMIN),
        Route("POST", "/api/admin/apps/installed", ap.install, ADMIN),
        Route("PUT", "/api/admin/apps/installed/<app_id>", ap.update, ADMIN),
        Route("DELETE", "/api/admin/apps/installed/<app_id>", ap.remove, ADMIN),
        Route("POST", "/api/admin/apps/meta", ap.create_meta, ADMIN),
        Route("POST", "/api/admin/launch/meta_customize", s.customize_meta, ADMIN),
        Route("GET", "/api/admin/apps/templates", ap.templates, ADMIN),
        Route("POST", "/api/admin/apps/templates", ap.put_template, ADMIN),
        Route("DELETE", "/api/admin/apps/templates/<template_name>", ap.remove_template,
              ADMIN),
    ]
    found += store_routes(h.stores) + file_routes(h.files)
    return found


def store_routes(st: Any) -> list[Route]:
    """App stores, available apps, icons, update checks (upstream-protocol 4.2, 4.10)."""
    if st is None:
        return []
    installed = "/api/admin/apps/installed/<app_id>"
    return [
        Route("GET", "/api/admin/apps/stores", st.list_stores, ADMIN),
        Route("POST", "/api/admin/apps/stores", st.add_store, ADMIN),
        Route("DELETE", "/api/admin/apps/stores/<store_name>", st.remove_store, ADMIN),
        Route("GET", "/api/admin/apps/available", st.available, ADMIN),
        Route("POST", installed + "/check_update", st.check_update, ADMIN),
        Route("POST", installed + "/pull_latest", st.pull_latest, ADMIN),
        Route("GET", "/api/app_icon/<app_id>", st.app_icon, USER),
    ]


def file_routes(f: Any) -> list[Route]:
    """Uploads, launch from file, file manager, public shares (4.3, 4.6-4.8)."""
    if f is None:
        return []
    return [
        Route("POST", "/api/upload/initiate", f.initiate, USER),
        Route("POST", "/api/upload/chunk", f.chunk, USER, base64_member="chunk_data_b64"),
        Route("POST", "/api/upload/to_storage", f.to_storage, USER),
        Route("GET", "/api/upload", f.list_uploads, USER),
        Route("DELETE", "/api/upload/<upload_id>", f.cancel, USER),
        Route("POST", "/api/launch/file", f.launch_file, USER),
        Route("POST", "/api/launch/file_path", f.launch_file_path, USER),
        Route("POST", "/api/sessions/<session_id>/send_file", f.send_file, USER),
        Route("GET", "/api/files/list/<home_dir>", f.list_dir, USER),
        Route("GET", "/api/files/download/chunk/<home_dir>", f.download_chunk, USER),
        Route("POST", "/api/files/create_folder/<home_dir>", f.create_folder, USER),
        Route("POST", "/api/files/delete/<home_dir>", f.delete, USER),
        Route("GET", "/api/files/delete_status/<task_id>", f.delete_status, USER),
        Route("POST", "/api/files/upload_to_dir/<home_dir>", f.upload_to_dir, USER),
        Route("POST", "/api/files/share", f.share, USER),
        Route("GET", "/api/files/shares", f.shares, USER),
        Route("DELETE", "/api/files/share/<share_id>", f.unshare, USER),
    ]
