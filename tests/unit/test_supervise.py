"""A crashing background service is logged, counted and restarted; the rest keeps running."""

from __future__ import annotations

import logging

import pytest
import trio
import trio.testing

from edge_sched.core.backoff import Backoff
from edge_sched.runtime.metrics import build_metrics
from edge_sched.runtime.supervisor import supervise


async def test_crashing_service_is_restarted_with_backoff(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = build_metrics()
    runs: list[float] = []
    neighbour_ticks = 0

    async def flaky() -> None:
        runs.append(trio.current_time())
        raise RuntimeError("boom")

    async def neighbour() -> None:
        nonlocal neighbour_ticks
        while True:
            await trio.sleep(1)
            neighbour_ticks += 1

    with caplog.at_level(logging.ERROR):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(supervise, "flaky", flaky, metrics, Backoff(initial_s=1, max_s=4))
            nursery.start_soon(neighbour)
            await trio.sleep(20.5)  # off the tick boundary: no wake-up order race
            nursery.cancel_scope.cancel()
    assert len(runs) >= 4
    gaps = [b - a for a, b in zip(runs, runs[1:])]
    assert all(0.5 <= g <= 4 for g in gaps)  # bounded exponential backoff
    restarts = metrics.registry.get_sample_value("edge_sched_service_restarts_total", {"service": "flaky"})
    assert restarts is not None and len(runs) - 1 <= restarts <= len(runs)
    assert neighbour_ticks == 20  # the failing service never disturbed its neighbour
    assert "service flaky crashed; restarting it" in caplog.text


def test_the_http_server_listens_with_a_large_backlog() -> None:
    # Found by tests/faults/test_overload.py: with Hypercorn's default backlog of 100, a burst
    # of 1,000 new connections overflowed the accept queue and clients were reset.
    from edge_sched.runtime.supervisor import _hypercorn_config
    from edge_sched.settings import Settings

    assert _hypercorn_config(Settings.from_env({}), 8000, tls=False).backlog == 4096
