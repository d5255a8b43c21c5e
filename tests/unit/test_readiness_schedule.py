"""The readiness poll's schedule: quick first probes, backing off to the configured interval."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.web.http_headers import Headers

from sealskin.providers import ProviderError
from sealskin.providers.readiness import HttpReadiness


class Scripted(HttpReadiness):
    """The real schedule, with each probe's answer taken from a list (no network)."""

    def __init__(self, clock: Clock, answers: list[int | None]) -> None:
        super().__init__(reactor, clock, interval_seconds=0.25, first_interval_seconds=0.05)
        self.clock, self.answers, self.probed_at = clock, answers, []

    async def _probe(self, url: bytes, headers: Headers) -> int | None:
        self.probed_at.append(round(self.clock.seconds(), 3))
        return self.answers.pop(0) if self.answers else None


def run(r: Scripted, timeout: float) -> Deferred[float]:
    d = Deferred.fromCoroutine(r.wait("h", 1, "/", "Basic x", timeout_seconds=timeout))
    while not d.called:  # straight to each next probe
        r.clock.advance(min(c.getTime() for c in r.clock.getDelayedCalls()) - r.clock.seconds())
    return d


@pytest_twisted.ensureDeferred
async def test_probes_back_off_from_50_ms_to_the_interval() -> None:
    r = Scripted(Clock(), [None] * 6 + [200])
    waited = await run(r, timeout=10)
    assert r.probed_at == [0, 0.05, 0.15, 0.35, 0.6, 0.85, 1.1]
    assert waited == pytest.approx(1.1)


@pytest_twisted.ensureDeferred
async def test_no_answer_until_the_deadline_is_a_readiness_error() -> None:
    r = Scripted(Clock(), [])
    with pytest.raises(ProviderError, match="did not answer in time"):
        await run(r, timeout=1)
    assert r.probed_at[-1] >= 1
