"""Autostart scripts in a session's home (upstream-protocol 5.8): which one, and where."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from sealskin.errors import ApiError, Kind
from sealskin.model import InstalledApp
from sealskin.orchestration import autostart
from sealskin.orchestration.ownership import AppUser


def app(**config: object) -> InstalledApp:
    return InstalledApp(id="a1", name="A", source="Web", source_app_id="viewer",
                        provider_config={"image": "x/y", **config})


def b64(text: bytes) -> str:
    return base64.b64encode(text).decode()


@pytest_twisted.ensureDeferred
async def test_the_apps_own_script_for_the_mode_comes_first() -> None:
    asked: list[tuple[str, str, bool]] = []

    async def store(name: str, app_id: str, wayland: bool) -> bytes | None:
        asked.append((name, app_id, wayland))
        return b"from the store"

    both = app(autostart=True, custom_autostart_script_b64=b64(b"x11"),
               custom_autostart_wayland_script_b64=b64(b"wl"))
    assert await autostart.script_for(both, False, store) == b"x11"
    assert await autostart.script_for(both, True, store) == b"wl"
    assert asked == []
    only_x11 = app(autostart=True, custom_autostart_script_b64=b64(b"x11"))
    assert await autostart.script_for(only_x11, True, store) == b"from the store"
    assert asked == [("Web", "viewer", True)]
    assert await autostart.script_for(app(autostart=False), True, store) is None
    manual = InstalledApp(id="m", name="M", provider_config={"autostart": True})
    assert await autostart.script_for(manual, False, store) is None
    broken = app(custom_autostart_script_b64="not base64!")
    assert await autostart.script_for(broken, False, None) is None


@pytest.mark.parametrize("wayland,folder", [(False, "openbox"), (True, "labwc")])
def test_the_script_is_written_executable_and_replaced_whole(tmp_path: Path, wayland: bool,
                                                             folder: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    owner = AppUser(os.getuid(), os.getgid())
    autostart._thd_write(str(home), wayland, b"#!/bin/sh\nfirst\n", owner)
    script = home / ".config" / folder / "autostart"
    assert script.read_bytes() == b"#!/bin/sh\nfirst\n"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755
    assert stat.S_IMODE((home / ".config").stat().st_mode) == 0o755
    autostart._thd_write(str(home), wayland, b"#!/bin/sh\nsecond\n", owner)
    assert script.read_bytes() == b"#!/bin/sh\nsecond\n"
    assert sorted(os.listdir(script.parent)) == ["autostart"]  # no temporary file left


def test_a_symlink_in_the_home_is_never_followed(tmp_path: Path) -> None:
    """The app owns its home: a link it planted must not make the server write elsewhere."""
    home, outside = tmp_path / "home", tmp_path / "outside"
    home.mkdir()
    outside.mkdir()
    owner = AppUser(os.getuid(), os.getgid())
    (home / ".config").symlink_to(outside)
    with pytest.raises(ApiError) as e:
        autostart._thd_write(str(home), False, b"evil", owner)
    assert e.value.kind is Kind.FORBIDDEN
    assert list(outside.iterdir()) == []
    (home / ".config").unlink()
    (home / ".config" / "openbox").mkdir(parents=True)
    (outside / "target").write_bytes(b"keep")
    (home / ".config" / "openbox" / "autostart").symlink_to(outside / "target")
    autostart._thd_write(str(home), False, b"new", owner)  # the link is replaced, not followed
    assert (outside / "target").read_bytes() == b"keep"
    assert (home / ".config" / "openbox" / "autostart").read_bytes() == b"new"



@pytest.mark.parametrize("make, kind, where", [
    (lambda h: (h / ".config").write_text("x"), Kind.CONFLICT, "'.config' in the home is not"),
    (lambda h: (h / ".config" / "openbox" / "autostart").mkdir(parents=True), Kind.CONFLICT,
     "'.config/openbox/autostart' in the home is a directory"),
    (lambda h: ((h / ".config").mkdir(), (h / ".config" / "openbox").symlink_to("/tmp")),
     Kind.FORBIDDEN, "'.config/openbox' in the home is a symbolic link"),
])
def test_what_is_in_the_way_is_named(tmp_path: Path, make: Any, kind: Kind,
                                     where: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    make(home)
    with pytest.raises(ApiError) as e:
        autostart._thd_write(str(home), False, b"x", AppUser(os.getuid(), os.getgid()))
    assert e.value.kind is kind and e.value.detail.startswith(where), e.value.detail
