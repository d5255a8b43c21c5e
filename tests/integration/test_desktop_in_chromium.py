"""A real browser (Debian's headless Chromium) opens the single-use URL of a
``sealskin/desktop`` session through our TLS proxy; the screenshot must show the desktop.

The screenshot is kept in ``test-artifacts/desktop.png``. Chromium is told to accept the
server's self-signed certificate (``--ignore-certificate-errors``): the test's own
certificate, nothing else is reachable here.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import docker
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue

from server_harness import admin_client, start_server

pytestmark = [pytest.mark.docker, pytest.mark.browser]
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
DESKTOP = "sealskin/desktop:latest"


@pytest.fixture(scope="session")
def desktop_image(docker_client: docker.DockerClient) -> str:
    subprocess.run([str(ROOT / "images" / "build.sh"), "desktop"], check=True)
    return DESKTOP


@pytest_twisted.async_yield_fixture
async def live(tmp_path: Path, run_label: str, desktop_image: str) -> AsyncIterator[Any]:
    svc = await start_server(str(tmp_path / "data"), **{"server-id": run_label + "-b",
                                                        "launch-timeout-seconds": "60"})
    yield svc
    await svc.stop()


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Decodes an 8-bit RGB/RGBA PNG (what Chromium writes) into rows, stdlib only."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, width = 8, b"", 0
    height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            chunks += body
        pos += 12 + length
    raw, rows, prev = zlib.decompress(chunks), [], bytes(width * channels)
    stride = width * channels
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b, c = prev[i], prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = bytes(line)
    return width, channels, rows


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
@pytest_twisted.ensureDeferred
async def test_chromium_shows_the_desktop(live: Any, tmp_path: Path) -> None:
    admin = admin_client(live)
    app = await admin.ok("POST", "/api/admin/apps/installed", {
        "name": "Desktop", "users": ["all"], "pull_policy": "never",
        "provider_config": {"image": DESKTOP, "port": 3000, "type": "desktop"}})
    launched = await admin.ok("POST", "/api/launch/simple", {"application_id": app["id"]})
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "desktop.png"
    url, colours, err = launched["session_url"], 0, b""
    # noVNC connects, then the first framebuffer update paints the desktop; Chromium's
    # virtual time does not wait for the network, so retry with a fresh URL each time
    for attempt in range(4):
        if attempt:
            url = (await admin.ok("GET", "/api/sessions"))[0]["session_url"]
        if shot.exists():
            shot.unlink()
        out, err, code = await getProcessOutputAndValue("chromium", [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors",
            f"--user-data-dir={tmp_path / f'profile{attempt}'}", "--window-size=1280,800",
            f"--virtual-time-budget={20000 * (attempt + 1)}",
            "--run-all-compositor-stages-before-draw", f"--screenshot={shot}",
            f"https://127.0.0.1:{live.session_port}{url}"], env=dict(os.environ),
            reactor=reactor)
        if shot.exists():
            width, channels, rows = png_pixels(shot)
            colours = len({row[x:x + 3] for row in rows[::20]
                           for x in range(0, width * channels, 40 * channels)})
            if colours > 8:
                break
    assert shot.exists(), err[-2000:]
    # a blank or error page, or noVNC before its first update, has a few colours; the
    # desktop (wallpaper, taskbar, terminal text, noVNC bar) has many
    assert colours > 8, f"screenshot looks blank: {colours} colours"
    await admin.call("DELETE", f"/api/sessions/{launched['session_id']}")
