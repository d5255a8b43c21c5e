"""Meta apps' pure parts: derived home names and template copies (upstream-protocol 5.11)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sealskin.orchestration.meta import _thd_copy_template, auto_home_name
from sealskin.orchestration.ownership import AppUser


@pytest.mark.parametrize("name, home", [
    ("Lab Tools", "auto-lab-tools"), ("  GIMP_2  ", "auto-gimp-2"), ("Café / Ω", "auto-caf"),
    ("x" * 80, "auto-" + "x" * 50), ("!!!", "auto-app")])
def test_auto_home_names(name: str, home: str) -> None:
    assert auto_home_name(name) == home


def test_a_template_copy_keeps_links_and_leaves_out_special_files(tmp_path: Path) -> None:
    """A meta app's template was filled by a container: a FIFO there must not block the
    copy (opening it would wait for a writer), and links are copied as links."""
    template, home = tmp_path / "template", tmp_path / "home"
    (template / "a" / "b").mkdir(parents=True)
    (template / "a" / "b" / "f.txt").write_text("kept")
    os.mkfifo(template / "a" / "pipe")
    os.symlink("/etc/passwd", template / "link")
    _thd_copy_template(str(template), str(home), AppUser(os.getuid(), os.getgid()))
    assert (home / "a" / "b" / "f.txt").read_text() == "kept"
    assert os.readlink(home / "link") == "/etc/passwd"
    assert not (home / "a" / "pipe").exists()
