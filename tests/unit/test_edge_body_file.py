"""A big body is opened from the server's own descriptor of Twisted's temporary file."""

from __future__ import annotations

import io
import os
import tempfile

from sealskin.api.edge import _thd_open_own
from sealskin.crypto import envelope, inplace


def test_a_big_body_is_still_readable_after_twisted_closed_its_file() -> None:
    key = os.urandom(32)
    body = envelope.seal_json(key, {"chunk_data_b64": "QUJD" * (envelope.FAST_JSON_BYTES // 3)})
    twisted_file = tempfile.TemporaryFile()
    twisted_file.write(body)
    own = io.FileIO(os.dup(twisted_file.fileno()), "rb")
    twisted_file.close()  # what Request.connectionLost does when the client goes away
    opened = _thd_open_own(key, own, len(body), "chunk_data_b64")
    assert opened is not None
    assert own.closed
    text = opened[1]["chunk_data_b64"]
    assert isinstance(text, inplace.Base64Text)
    assert bytes(text.decode())[:6] == b"ABCABC"
