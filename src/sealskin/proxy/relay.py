"""Two open WebSocket connections joined frame by frame: browser <-> SealSkin <-> app.

Once both opening handshakes are done (:mod:`sealskin.proxy.ws`), a :class:`Relay` owns the
two transports and forwards their bytes verbatim: browser frames are masked client frames
and app frames unmasked server frames, valid as they are on the other connection. A
:class:`~sealskin.proxy.frames.FrameScanner` per direction reads only the frame headers and
stops a direction that breaks the rules, closing both sides with its code (1002, or 1009
for an oversized message: the other side learns why its partner went away).

What the relay writes itself it writes at a frame boundary of the stream it joins: pings
toward an idle browser, close frames when a session ends (1001), when one side drops without
a closing handshake (1001 toward the app, 1014 toward the browser) or for a violation. A side
whose stream stops mid-frame cannot take a frame and is aborted instead. Close frames of the
endpoints pass through like any other frame; the relay closes a TCP connection once its
peer's has gone.

Backpressure as in Twisted's ``portforward``: each transport's reading is registered as the
other's producer, so a full send buffer on one side pauses reading on the other and the
proxy never piles up data.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import attrs
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from sealskin.proxy.frames import (
    BAD_GATEWAY,
    CLOSE,
    GOING_AWAY,
    PING,
    FrameScanner,
    Violation,
    close_body,
    control_frame,
)
from sealskin.proxy.transport import Transport

log = Logger()

# The proxy's own pings carry this payload so that an app which pings too never takes the
# browser's answer to ours for its own (it gets that pong anyway, see Relay._from_browser).
PING_PAYLOAD = b"sealskin-proxy"
TOUCH_EVERY_SECONDS = 10.0


@implementer(IPushProducer)
class _Reading:
    """A side's reading, paused while its peer's send buffer is full.

    Not the transport itself: a consumer that loses its connection stops its producer, and a
    transport would take that as ``loseConnection``, before the relay could write it a close
    frame. Connection loss is the relay's to handle.
    """

    __slots__ = ("_side",)

    def __init__(self, side: Transport) -> None:
        self._side = side

    def pauseProducing(self) -> None:
        self._side.pauseProducing()

    def resumeProducing(self) -> None:
        self._side.resumeProducing()

    def stopProducing(self) -> None:
        pass


@attrs.frozen
class RelayLimits:
    """Sizes in bytes (0: unlimited), times in seconds (a ping interval of 0: no pings)."""

    ping_interval_seconds: float = 30.0
    ping_timeout_seconds: float = 30.0
    max_message_bytes: int = 64 * 1024 * 1024
    max_frame_bytes: int = 16 * 1024 * 1024
    close_timeout_seconds: float = 5.0


class Relay:
    """The frame relay between a browser's transport and the app's (module doc).

    ``touch`` is called at most every ``TOUCH_EVERY_SECONDS`` while frames flow (idle
    reaping); ``done`` once, when both connections are gone.
    """

    def __init__(self, *, browser: Transport, app: Transport, clock: IReactorTime,
                 limits: RelayLimits, touch: Callable[[], None],
                 done: Callable[[Relay], None]) -> None:
        self._browser: Transport | None = browser
        self._app: Transport | None = app
        self._clock = clock
        self._limits = limits
        self._touch_callback = touch
        self._done = done
        self.up = FrameScanner(masked=True, max_message_bytes=limits.max_message_bytes,
                               max_frame_bytes=limits.max_frame_bytes)
        self.down = FrameScanner(masked=False, max_message_bytes=limits.max_message_bytes,
                                 max_frame_bytes=limits.max_frame_bytes)
        self._relaying = True   # False once the relay closes both sides itself
        self._heard = False     # bytes from the browser since the last ping tick
        self._ping_due = False  # a ping waits for a frame boundary toward the browser
        self._pongs = 0
        self._last_touch = float("-inf")  # the first frames touch at once
        self._tick: IDelayedCall | None = None
        self._pong_deadline: IDelayedCall | None = None
        self._close_deadline: IDelayedCall | None = None

    # -- start ----------------------------------------------------------------------------

    def start(self, *, from_browser: bytes, from_app: bytes) -> None:
        """Joins the transports; the bytes each side sent after its handshake come first.

        The app's transport is paused (it opened before the browser's handshake was
        answered) and is resumed here.
        """
        browser, app = self._browser, self._app
        assert browser is not None and app is not None
        # The HTTP server that handled the upgrade is still the browser transport's producer.
        browser.unregisterProducer()
        browser.registerProducer(_Reading(app), True)
        app.registerProducer(_Reading(browser), True)
        self._schedule_tick()
        if from_app:
            self.from_app(from_app)
        if from_browser:
            self.from_browser(from_browser)
        if self._app is not None:
            self._app.resumeProducing()

    # -- data -----------------------------------------------------------------------------

    def from_browser(self, data: bytes) -> None:
        """Bytes the browser sent (its protocol's ``dataReceived``)."""
        self._heard = True
        out = self.up.feed(data)
        if out and self._relaying and self._app is not None:
            self._app.write(out)
        if self.up.pongs != self._pongs:
            # RFC 6455 5.5.3 allows unsolicited pongs, so the browser's answer to our ping is
            # forwarded to the app like any other pong: no copy, no split of the stream.
            self._pongs = self.up.pongs
            self._pong_arrived()
        self._after(self.up, self._browser)
        self._touch()

    def from_app(self, data: bytes) -> None:
        """Bytes the app sent (its protocol's ``dataReceived``)."""
        out = self.down.feed(data)
        if out and self._relaying and self._browser is not None:
            if self._ping_due and self.down.first_boundary >= 0:
                self._write_with_ping(out, self.down.first_boundary)
            else:
                self._browser.write(out)
        self._after(self.down, self._app)
        self._touch()

    def _write_with_ping(self, out: bytes, at: int) -> None:
        assert self._browser is not None
        self._ping_due = False
        if at:
            self._browser.write(out[:at])
        self._browser.write(control_frame(PING, PING_PAYLOAD))
        if at < len(out):
            self._browser.write(out[at:])

    def _after(self, scanner: FrameScanner, sender: Transport | None) -> None:
        """A violation closes both sides; after our own close, a side's close frame ends it."""
        if scanner.violation is not None and self._relaying:
            self._stop(scanner.violation)
        elif not self._relaying and scanner.closes and sender is not None:
            sender.loseConnection()

    def _touch(self) -> None:
        now = self._clock.seconds()
        if now - self._last_touch >= TOUCH_EVERY_SECONDS:
            self._last_touch = now
            self._touch_callback()

    # -- pings ----------------------------------------------------------------------------

    def _schedule_tick(self) -> None:
        if self._limits.ping_interval_seconds > 0:
            self._tick = self._clock.callLater(self._limits.ping_interval_seconds, self._ping_tick)

    def _ping_tick(self) -> None:
        """Pings the browser if it sent nothing for an interval; it must answer in time."""
        self._tick = None
        if self._heard:
            self._heard = False
            self._schedule_tick()
            return
        if self.down.at_boundary and self._browser is not None:
            self._browser.write(control_frame(PING, PING_PAYLOAD))
        else:
            self._ping_due = True  # sent at the app stream's next frame boundary
        self._pong_deadline = self._clock.callLater(self._limits.ping_timeout_seconds,
                                                    self._pong_missed)

    def _pong_arrived(self) -> None:
        if self._pong_deadline is not None:
            _cancel(self._pong_deadline)
            self._pong_deadline = None
            self._heard = False
            self._schedule_tick()

    def _pong_missed(self) -> None:
        self._pong_deadline = None
        log.debug("browser WebSocket did not answer a ping; dropping it")
        if self._browser is not None:
            self._browser.abortConnection()

    # -- ending ---------------------------------------------------------------------------

    def end(self, reason: str = "session ended") -> None:
        """Session end or shutdown: both sides get 1001 (RFC 6455 7.4.1 "going away")."""
        if self._relaying:
            self._stop(Violation(GOING_AWAY, reason))

    def _stop(self, why: Violation) -> None:
        """Closes both sides with ``why.code``; each ends on its close frame or the deadline."""
        self._relaying = False
        self._cancel_pings()
        self._unjoin()
        body = close_body(why.code, why.reason)
        self._send_close(self._browser, self.down, self.up, body, mask=None)
        self._send_close(self._app, self.up, self.down, body, mask=os.urandom(4))
        self._arm_close_deadline()

    def _send_close(self, side: Transport | None, toward: FrameScanner, sent: FrameScanner,
                    body: bytes, *, mask: bytes | None) -> None:
        """A close frame into the stream ``toward`` a side, at a boundary, else an abort.

        ``sent`` is the side's own stream: a side that broke the rules or has sent its
        close frame already is not waited for (RFC 6455 7.1.7).
        """
        if side is None:
            return
        if not toward.closes:  # else its closing handshake is under way already
            if not toward.at_boundary:
                side.abortConnection()
                return
            side.write(control_frame(CLOSE, body, mask=mask))
        if sent.closes or sent.violation is not None:
            side.loseConnection()
        else:
            side.resumeProducing()  # read its answer even if backpressure paused it

    def _arm_close_deadline(self) -> None:
        if self._close_deadline is None:
            self._close_deadline = self._clock.callLater(self._limits.close_timeout_seconds,
                                                         self._abort_both)

    def _abort_both(self) -> None:
        self._close_deadline = None
        for side in (self._browser, self._app):
            if side is not None:
                side.abortConnection()

    def browser_lost(self) -> None:
        """The browser's connection is gone: the app gets a close frame (1001), then EOF."""
        self._browser = None
        self._lost(self._app, self.up, GOING_AWAY, mask=os.urandom(4))

    def app_lost(self) -> None:
        """The app's connection is gone: the browser gets 1014 unless the app closed first."""
        self._app = None
        self._lost(self._browser, self.down, BAD_GATEWAY, mask=None)

    def _lost(self, other: Transport | None, toward: FrameScanner, code: int, *,
              mask: bytes | None) -> None:
        self._cancel_pings()
        self._unjoin()
        if other is None:
            self._finish()
            return
        if not self._relaying:
            return  # closing both already: the other ends on its close frame or the deadline
        self._relaying = False
        self._arm_close_deadline()
        if toward.closes:  # the closing handshake went through us: nothing to add
            other.loseConnection()
        elif toward.at_boundary:
            other.write(control_frame(CLOSE, close_body(code), mask=mask))
            other.loseConnection()
        else:
            other.abortConnection()

    def _finish(self) -> None:
        if self._close_deadline is not None:
            _cancel(self._close_deadline)
            self._close_deadline = None
        self._done(self)

    def _unjoin(self) -> None:
        """Drops the producer links, so closing one side never waits for the other."""
        for side in (self._browser, self._app):
            if side is not None:
                side.unregisterProducer()

    def _cancel_pings(self) -> None:
        self._ping_due = False
        for call in (self._tick, self._pong_deadline):
            if call is not None:
                _cancel(call)
        self._tick = self._pong_deadline = None


def _cancel(call: IDelayedCall) -> None:
    if call.active():
        call.cancel()


__all__ = ["Relay", "RelayLimits", "PING_PAYLOAD", "TOUCH_EVERY_SECONDS"]
