"""The ``sealskin`` command-line client (its code is in :mod:`sealskin.cli.main`)."""

from __future__ import annotations

import sys
from typing import NoReturn

INTERRUPTED = 130  # the shell's status for a command ended by SIGINT


def interrupted() -> NoReturn:
    sys.stderr.write("\nsealskin: interrupted\n")
    raise SystemExit(INTERRUPTED)


def main() -> None:
    """Entry point: loads the client, then runs it. Ctrl-C while it loads (Twisted takes
    a moment to import) ends it as quietly as Ctrl-C later does."""
    try:
        from sealskin.cli.main import main as run
    except KeyboardInterrupt:
        interrupted()
    run()
