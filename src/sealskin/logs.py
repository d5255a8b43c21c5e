"""Log observers: twistd's text log is the default; JSON lines for collectors.

Use ``twistd --logger=sealskin.logs.json_observer sealskin`` for JSON.
Events carry their fields (constant format strings), so JSON keeps them.
"""

from __future__ import annotations

import sys

from twisted.logger import ILogObserver, jsonFileLogObserver


def json_observer() -> ILogObserver:
    return jsonFileLogObserver(sys.stdout)
