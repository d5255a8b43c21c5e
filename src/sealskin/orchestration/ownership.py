"""Files the app containers must write belong to the app user (PUID/PGID).

App images run their desktop as ``PUID`` (upstream-protocol 6.3); directories
the server makes for them (homes, ``Desktop/files``, ephemeral homes, uploaded
files, new folders) are handed to that user. Only root can do that: a server
running unprivileged leaves ownership as is (its containers then need a
matching PUID).
"""

from __future__ import annotations

import os

import attrs


@attrs.frozen
class AppUser:
    uid: int = 1000
    gid: int = 1000

    def _can(self) -> bool:
        return os.geteuid() == 0

    def give(self, path: str, *, dir_fd: int | None = None) -> None:
        """chown without following a final symlink. Work pool only (file I/O)."""
        if self._can():
            os.chown(path, self.uid, self.gid, dir_fd=dir_fd, follow_symlinks=False)

    def give_fd(self, fd: int) -> None:
        if self._can():
            os.fchown(fd, self.uid, self.gid)

    def make_dirs(self, *paths: str) -> None:
        """``mkdir -p`` each path (0755) and give every directory made on the way."""
        for path in paths:
            missing = []
            head = path
            while head and not os.path.isdir(head):
                missing.append(head)
                head = os.path.dirname(head)
            os.makedirs(path, mode=0o755, exist_ok=True)
            for made in reversed(missing):
                self.give(made)
