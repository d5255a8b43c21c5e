"""Path confinement: every name or path a client sends goes through here.

Home names are checked by regex and against reserved names; file names are
reduced to one safe component; relative paths are split into components with
no ``..``, no control characters and no separators inside a component. On disk
(``_thd_*``, work pool only) a path is opened one component at a time with
``O_NOFOLLOW`` below a directory descriptor, so a symlink planted inside a home
(by the user's own container, at any moment) can never lead outside it
(upstream-protocol 4.7, 9, 10 W1/W2).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Iterator, Sequence

from twisted.logger import Logger

from sealskin.errors import ApiError, Kind

log = Logger()

HOME_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
FOLDER_NAME_RE = re.compile(r"^[^/\\]+$")
SHARED_FILES = "_sealskin_shared_files"
EPHEMERAL = "cleanroom"
MAX_NAME_BYTES = 255
MAX_PATH_CHARS = 4096
MAX_DEPTH = 64
TRAVERSAL = "Directory traversal attempt detected."

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _has_control(text: str) -> bool:
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def is_ephemeral(home_name: object) -> bool:
    """``cleanroom`` in any case asks for an ephemeral home (upstream-protocol 5.11)."""
    return isinstance(home_name, str) and home_name.lower() == EPHEMERAL


def is_reserved_home(name: str) -> bool:
    """Names no one may give a home: ``cleanroom`` (any case) and the shared-files home
    (the server makes it). ``auto-*`` homes are the popup's to make (5.11)."""
    return is_ephemeral(name) or name == SHARED_FILES


def home_name(value: object, field: str = "home_dir") -> str:
    """A home name as sent by a client: INVALID unless it matches ``^[A-Za-z0-9_-]+$``."""
    if not isinstance(value, str) or not HOME_NAME_RE.fullmatch(value):
        raise ApiError(Kind.INVALID, f"'{field}' must be 1-64 letters, digits, '_' or '-'.")
    return value


def file_name(value: object, field: str = "filename") -> str:
    """A client file name reduced to its basename (upstream-protocol 9); INVALID if unusable.

    Refused: empty, ``.``/``..``, control characters, more than 255 UTF-8 bytes.
    """
    if not isinstance(value, str):
        raise ApiError(Kind.INVALID, f"'{field}' must be a string.")
    if _has_control(value):
        raise ApiError(Kind.INVALID, f"'{field}' must be a file name without control "
                       "characters.")
    base = re.split(r"[/\\]", value)[-1].strip()
    if base in ("", ".", "..") or len(base.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise ApiError(Kind.INVALID, f"'{field}' must be a file name of 1-255 bytes.")
    return base


def folder_name(value: object) -> str:
    """A new folder's name (``^[^/\\\\]+$``, upstream-protocol 4.7), never ``.`` or ``..``."""
    if (not isinstance(value, str) or not FOLDER_NAME_RE.fullmatch(value)
            or value in (".", "..") or _has_control(value)
            or len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES):
        raise ApiError(Kind.INVALID, "'folder_name' must be a name without '/' or '\\'.")
    return value


def relative_parts(value: object, field: str = "path") -> tuple[str, ...]:
    """The components of a path inside a home; ``/`` and ``""`` are the home itself.

    A leading ``/`` means the home's root (the extension sends ``/Desktop``).
    FORBIDDEN for ``..``; INVALID for control characters, backslashes or
    over-long paths. Query values arrive percent-decoded, so ``%2e%2e`` is ``..``.
    """
    if value is None:
        value = "/"
    if not isinstance(value, str):
        raise ApiError(Kind.INVALID, f"'{field}' must be a string: a path inside the home.")
    if len(value) > MAX_PATH_CHARS:
        raise ApiError(Kind.INVALID, f"'{field}' is longer than {MAX_PATH_CHARS} characters.")
    if _has_control(value):
        raise ApiError(Kind.INVALID, f"'{field}' must be a path without control characters.")
    if "\\" in value:
        raise ApiError(Kind.FORBIDDEN, TRAVERSAL)
    parts = tuple(p for p in value.split("/") if p not in ("", "."))
    if ".." in parts:
        raise ApiError(Kind.FORBIDDEN, TRAVERSAL)
    if len(parts) > MAX_DEPTH or any(len(p.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES
                                     for p in parts):
        raise ApiError(Kind.INVALID, f"'{field}' is too long.")
    return parts


def display(parts: Sequence[str]) -> str:
    """The ``/``-rooted form the file manager shows."""
    return "/" + "/".join(parts)


def _os_error(e: OSError) -> ApiError:
    if e.errno in (errno.ELOOP, errno.EXDEV):
        return ApiError(Kind.FORBIDDEN, TRAVERSAL)
    if e.errno in (errno.ENOENT, errno.ENOTDIR):
        return ApiError(Kind.NOT_FOUND, "Path not found.")
    if e.errno == errno.EEXIST:
        return ApiError(Kind.CONFLICT, "The path already exists.")
    if e.errno in (errno.EACCES, errno.EPERM):
        return ApiError(Kind.FORBIDDEN, "Permission denied.")
    if e.errno == errno.ENAMETOOLONG:
        return ApiError(Kind.INVALID, "The name is too long for the file system.")
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return ApiError(Kind.TOO_LARGE, "The server's storage is full.")
    log.error("file system error: {error}", error=e)  # the client learns only "internal"
    return ApiError(Kind.INTERNAL, "internal error")


@contextlib.contextmanager
def translated() -> Iterator[None]:
    """Turns OSErrors of confined operations into ApiErrors (ELOOP -> traversal, 403)."""
    try:
        yield
    except OSError as e:
        raise _os_error(e) from None


def _open_below(dir_fd: int, name: str, flags: int) -> int:
    """``openat`` without following ``name``; a symlink there is ELOOP (-> 403) whatever
    the kernel said (with ``O_DIRECTORY`` Linux answers ENOTDIR)."""
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as e:
        is_link = False
        if e.errno in (errno.ENOTDIR, errno.ELOOP):
            with contextlib.suppress(OSError):
                is_link = stat.S_ISLNK(os.stat(name, dir_fd=dir_fd,
                                               follow_symlinks=False).st_mode)
        if is_link:
            raise OSError(errno.ELOOP, "symlink") from None
        raise


def open_below_dir(dir_fd: int, name: str) -> int:
    """The directory ``name`` in ``dir_fd``, not followed if it is a symlink (ELOOP)."""
    return _open_below(dir_fd, name, _DIR_FLAGS)


def _thd_open_dir(root: str, parts: Sequence[str]) -> int:
    """A descriptor of ``root/parts...`` opened without following any symlink below root.

    The caller closes it. Work pool only. Raises ApiError (403 for a symlink).
    """
    with translated():
        fd = os.open(root, _DIR_FLAGS)
        try:
            for part in parts:
                child = open_below_dir(fd, part)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
    return fd


@contextlib.contextmanager
def opened_dir(root: str, parts: Sequence[str]) -> Iterator[int]:
    """``_thd_open_dir`` as a context manager (work pool only)."""
    fd = _thd_open_dir(root, parts)
    try:
        with translated():
            yield fd
    finally:
        os.close(fd)


def _thd_open_file(root: str, parts: Sequence[str]) -> int:
    """A read descriptor of a regular file below ``root``; 403 for symlinks, 404 otherwise."""
    if not parts:
        raise ApiError(Kind.NOT_FOUND, "Path not found.")
    with opened_dir(root, parts[:-1]) as dfd:
        fd = _open_below(dfd, parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ApiError(Kind.NOT_FOUND, "Path not found.")
    return fd


def _thd_is_inside(root: str, path: str) -> bool:
    """Whether ``path`` resolves (symlinks followed) to ``root`` or below it."""
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    return os.path.commonpath([real_root, real]) == real_root
