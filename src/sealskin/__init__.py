"""SealSkin Server: per-user containerised desktop apps, streamed to a browser.

One Twisted daemon (``twistd sealskin``) serves an end-to-end encrypted control
API and a TLS session proxy in front of the users' containers.
"""

__version__ = "0.1.0"
