"""Readiness: poll an app's HTTP port until it answers (upstream-protocol 6.8)."""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.internet.task import deferLater
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from sealskin.providers import ProviderError


class HttpReadiness:
    """Polls ``GET http://host:port<path>`` with the app's credentials.

    Ready means any answer below 500 other than 401/404 from the app itself
    (those mean the app is up but something is misconfigured: reported at once).
    Probes start ``first_interval_seconds`` apart and back off to ``interval_seconds``:
    most apps answer within a second of their start, and a refused connection is cheap.
    """

    def __init__(self, reactor: IReactorTCP, clock: IReactorTime, *,
                 interval_seconds: float = 0.25, first_interval_seconds: float = 0.05,
                 probe_timeout_seconds: float = 2) -> None:
        self._clock = clock
        self._interval = interval_seconds
        self._first_interval = min(first_interval_seconds, interval_seconds)
        self._probe_timeout = probe_timeout_seconds
        self._agent = Agent(reactor, connectTimeout=probe_timeout_seconds,
                            pool=HTTPConnectionPool(reactor, persistent=False))

    async def wait(self, host: str, port: int, path: str, authorization: str, *,
                   timeout_seconds: float) -> float:
        """Returns seconds waited; raises ProviderError("readiness") on timeout."""
        started = self._clock.seconds()
        deadline = started + timeout_seconds
        headers = Headers({b"authorization": [authorization.encode()]})
        url = f"http://{host}:{port}{path}".encode()
        interval = self._first_interval
        while True:
            status = await self._probe(url, headers)
            if status is not None and status < 500:
                if status == 401:
                    raise ProviderError("readiness", "the app refused its credentials")
                return self._clock.seconds() - started
            if self._clock.seconds() >= deadline:
                raise ProviderError("readiness", "the app did not answer in time")
            await deferLater(self._clock, interval, lambda: None)
            interval = min(interval * 2, self._interval)

    async def _probe(self, url: bytes, headers: Headers) -> int | None:
        try:
            d = self._agent.request(b"GET", url, headers)
            _ = d.addTimeout(self._probe_timeout, self._clock)  # a truly asynchronous wait
            response = await d
            await readBody(response)
            return int(response.code)
        except CancelledError:
            raise
        except Exception:
            return None
