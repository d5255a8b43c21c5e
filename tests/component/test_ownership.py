"""Directories and files the apps must write belong to PUID/PGID (the app user), not
root: a desktop running as PUID could not save into its own home otherwise."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from independent_client import Client

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="only root can hand files over")


@pytest_twisted.ensureDeferred
async def test_homes_and_uploaded_files_belong_to_the_app_user(admin: Client,
                                                               server: Any) -> None:
    await admin.ok("POST", "/api/homedirs", {"home_name": "docs"})
    home = Path(server.paths.homes) / "admin" / "docs"
    for path in (home, home / "Desktop", home / "Desktop" / "files"):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (1000, 1000), path
    made = await admin.ok("POST", "/api/upload/initiate", {"filename": "a.txt", "total_size": 3})
    await admin.ok("POST", "/api/upload/chunk", {"upload_id": made["upload_id"],
                                                 "chunk_index": 0, "chunk_data_b64": "YWJj"})
    await admin.ok("POST", "/api/upload/to_storage", {
        "filename": "a.txt", "upload_id": made["upload_id"], "total_chunks": 1,
        "home_name": "_sealskin_shared_files"})
    stored = Path(server.paths.homes) / "admin" / "_sealskin_shared_files" / "a.txt"
    assert stored.read_bytes() == b"abc"
    assert (stored.stat().st_uid, stored.stat().st_gid) == (1000, 1000)
