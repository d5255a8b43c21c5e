"""Path confinement rules (orchestration/paths): names, file names, relative paths, symlinks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sealskin.errors import ApiError, Kind
from sealskin.orchestration import paths


@pytest.mark.parametrize("name", ["work", "a_b-C9", "x" * 64])
def test_home_names_that_pass(name: str) -> None:
    assert paths.home_name(name) == name


@pytest.mark.parametrize("name", ["", "..", "../x", "/", "a b", "a/b", "x" * 65, "é", None, 3])
def test_home_names_that_fail(name: object) -> None:
    with pytest.raises(ApiError) as e:
        paths.home_name(name)
    assert e.value.kind is Kind.INVALID


def test_reserved_homes() -> None:
    assert paths.is_reserved_home("CleanRoom") and paths.is_reserved_home("cleanroom")
    assert paths.is_reserved_home("_sealskin_shared_files") and not paths.is_reserved_home("w")
    assert not paths.is_reserved_home("auto-firefox")  # the popup makes these (5.11)
    assert paths.is_ephemeral("CLEANROOM") and not paths.is_ephemeral(None)


@pytest.mark.parametrize("given, kept", [("a.txt", "a.txt"), ("../../etc/passwd", "passwd"),
                                          ("C:\\x\\y.doc", "y.doc"), ("%2e%2e", "%2e%2e")])
def test_file_names_reduce_to_basename(given: str, kept: str) -> None:
    assert paths.file_name(given) == kept


@pytest.mark.parametrize("given", ["", ".", "..", "a/", "a\x00b", "a\nb", "x" * 256, "é" * 128])
def test_file_names_refused(given: str) -> None:
    with pytest.raises(ApiError):
        paths.file_name(given)


def test_relative_parts() -> None:
    assert paths.relative_parts("/") == () and paths.relative_parts(None) == ()
    assert paths.relative_parts("/Desktop//files/./x") == ("Desktop", "files", "x")
    for bad in ("..", "/a/../..", "a\\..\\b", "/Desktop/.."):
        with pytest.raises(ApiError) as e:
            paths.relative_parts(bad)
        assert e.value.kind is Kind.FORBIDDEN
    with pytest.raises(ApiError):
        paths.relative_parts("a\x00")


def test_open_refuses_symlinks_out_of_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "home", tmp_path / "outside"
    (root / "d").mkdir(parents=True)
    outside.mkdir()
    (outside / "f").write_text("x")
    os.symlink(outside, root / "d" / "out")
    os.symlink(outside / "f", root / "f")
    for parts in (("d", "out"), ("d", "out", "f")):
        with pytest.raises(ApiError) as e:
            os.close(paths._thd_open_dir(str(root), parts))
        assert e.value.detail == paths.TRAVERSAL
    with pytest.raises(ApiError) as e:
        os.close(paths._thd_open_file(str(root), ("f",)))
    assert e.value.kind is Kind.FORBIDDEN
    with pytest.raises(ApiError) as e:
        os.close(paths._thd_open_dir(str(root), ("missing",)))
    assert e.value.kind is Kind.NOT_FOUND
    os.close(paths._thd_open_dir(str(root), ("d",)))


@pytest.mark.parametrize("given, says", [(["a"], "must be a string"), (3, "must be a string"),
                                         ("a\tb", "without control characters")])
def test_file_name_refusals_say_what_is_wrong(given: object, says: str) -> None:
    with pytest.raises(ApiError) as refused:
        paths.file_name(given)
    assert says in refused.value.detail


@pytest.mark.parametrize("filename, n, expected", [
    ("report.pdf", 1, "report-1.pdf"),
    ("README", 2, "README-2"),
    (".bashrc", 1, ".bashrc-1"),
    ("n" * 255, 1, "n" * 253 + "-1"),
    ("n" * 251 + ".txt", 12, "n" * 248 + "-12.txt"),
    ("é" * 126 + ".x", 1, "é" * 125 + "-1.x"),  # never half a character
    ("a." + "e" * 200, 3, "a." + "e" * 200 + "-3"),  # an "extension" too long to keep
])
def test_numbered_names_stay_within_255_bytes(filename: str, n: int, expected: str) -> None:
    from sealskin.orchestration.uploads import numbered_name

    assert numbered_name(filename, n) == expected
    assert len(numbered_name(filename, n).encode()) <= 255
