"""Option parsing shared by the ``sealskin`` commands."""

from __future__ import annotations

import getopt
import sys
from collections.abc import Sequence

from twisted.python import usage


class Empty(usage.Options):
    pass


class Interspersed(usage.Options):
    """Accepts options after positional arguments (``users add bob --gpu false``)."""

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        argv = list(sys.argv[1:] if options is None else options)
        try:
            pairs, args = getopt.gnu_getopt(argv, self.shortOpt, self.longOpt)
        except getopt.GetoptError as e:
            raise usage.UsageError(str(e)) from None
        valued = {o.rstrip("=") for o in self.longOpt if o.endswith("=")}
        rebuilt: list[str] = []
        for name, value in pairs:
            if name.startswith("--"):
                rebuilt.append(f"{name}={value}" if name[2:] in valued else name)
            else:
                rebuilt += [name, value] if name[1] + ":" in self.shortOpt else [name]
        super().parseOptions([*rebuilt, "--", *args])  # type: ignore[no-untyped-call]  # Twisted leaves this untyped


class Noun(usage.Options):
    """A command whose first argument is a verb (``users add``, ``stores list``)."""

    verbs: Sequence[tuple[str, type[usage.Options], str]] = ()

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted leaves this untyped
        self.subCommands = [[name, None, opts, text] for name, opts, text in self.verbs]

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("Which action? " + ", ".join(v[0] for v in self.verbs))
