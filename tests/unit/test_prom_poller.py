"""The Prometheus poller on virtual time against httpx.MockTransport (spec S7).

Exact cadence, the request timeout enforced by a cancel scope (cut at exactly
MONITOR_REQUEST_TIMEOUT), failures that keep older readings until they are stale,
and every outcome counted in edge_sched_monitor_polls_total{result}.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import httpx
import pytest
import trio
import trio.testing

from edge_sched.adapters.prom_poller import run_prom_poller
from edge_sched.core.load import PROMETHEUS, REQUESTS
from edge_sched.core.model import NodeInfo
from edge_sched.runtime.metrics import Metrics, build_metrics
from edge_sched.runtime.usage import UsageStore
from edge_sched.settings import MonitorSettings, Settings

T0 = 1717000000.0
GI = 1024**3
NODE_A = NodeInfo("node-a", {"cpu": 4000, "memory": 8 * GI}, addresses=("10.0.0.5",))
NODE_B = NodeInfo("node-b", {"cpu": 4000, "memory": 8 * GI}, addresses=("10.0.0.50",))

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def wall() -> float:
    return T0 + trio.current_time()


def monitor(**changes: Any) -> MonitorSettings:
    base = attrs.evolve(Settings().monitor, api_url="http://prom.test:9090", poll_interval_s=15.0, request_timeout_s=5.0)
    return attrs.evolve(base, **changes)


def vector(*rows: tuple[dict[str, str], str], ts: float | None = None) -> httpx.Response:
    stamp = wall() if ts is None else ts
    body = {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": m, "value": [stamp, v]} for m, v in rows]},
    }
    return httpx.Response(200, json=body)


def is_cpu(request: httpx.Request) -> bool:
    return "node_cpu_seconds_total" in request.url.params["query"]


@attrs.define
class Rig:
    store: UsageStore
    metrics: Metrics
    requests: list[tuple[float, str]] = attrs.field(factory=list)

    def polls(self, result: str) -> float:
        value = self.metrics.registry.get_sample_value("edge_sched_monitor_polls_total", {"result": result})
        return value or 0.0

    def usage(self, node: NodeInfo = NODE_A) -> tuple[str, float | None, float | None]:
        u = self.store.usage(node)
        return u.source, u.cpu, u.memory


async def start(nursery: trio.Nursery, handler: Handler, cfg: MonitorSettings | None = None) -> Rig:
    rig = Rig(UsageStore(), build_metrics())

    async def record(request: httpx.Request) -> httpx.Response:
        rig.requests.append((trio.current_time(), "cpu" if is_cpu(request) else "memory"))
        return await handler(request)

    await nursery.start(
        lambda task_status: run_prom_poller(
            cfg or monitor(), rig.store, rig.metrics,
            nodes=lambda: [NODE_A, NODE_B], transport=httpx.MockTransport(record), wall_clock=wall,
            task_status=task_status,
        )
    )
    return rig


async def healthy(request: httpx.Request) -> httpx.Response:
    if is_cpu(request):
        return vector(({"instance": "10.0.0.5:9100"}, "0.30"), ({"instance": "10.0.0.50:9100"}, "0.80"))
    return vector(({"node": "node-a"}, "0.55"))


async def test_polls_at_an_exact_cadence_and_publishes_readings(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    rig = await start(nursery, healthy)
    await trio.sleep(46)
    # Both queries run side by side (in either order) at each tick.
    assert sorted(rig.requests) == [(t, r) for t in (0.0, 15.0, 30.0, 45.0) for r in ("cpu", "memory")]
    assert rig.polls("ok") == 8
    assert rig.usage(NODE_A) == (PROMETHEUS, 0.30, 0.55)
    assert rig.usage(NODE_B) == (PROMETHEUS, 0.80, None)
    nursery.cancel_scope.cancel()


async def test_queries_use_the_window_and_the_configured_url(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[httpx.URL] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return await healthy(request)

    await start(nursery, handler, monitor(api_url="http://thanos.test:9091/", metrics_window_min=3))
    await trio.sleep(1)
    cpu = next(u for u in seen if "node_cpu" in u.params["query"])
    assert (cpu.host, cpu.port, cpu.path) == ("thanos.test", 9091, "/api/v1/query")
    assert cpu.params["query"] == '1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[3m]))'
    assert "dedup" not in cpu.params
    assert "partial_response" not in cpu.params
    nursery.cancel_scope.cancel()


async def test_thanos_dedup_and_partial_response_are_sent_when_set(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    seen: list[httpx.URL] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        return await healthy(request)

    await start(nursery, handler, monitor(dedup="true", partial_response="false"))
    await trio.sleep(1)
    assert {(u.params["dedup"], u.params["partial_response"]) for u in seen} == {("true", "false")}
    nursery.cancel_scope.cancel()


async def test_a_server_slower_than_the_timeout_is_cut_at_exactly_the_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    cut_at: list[float] = []

    async def slow(request: httpx.Request) -> httpx.Response:
        try:
            await trio.sleep(60)
        except trio.Cancelled:
            cut_at.append(trio.current_time())
            raise
        raise AssertionError("the poller waited past its timeout")

    rig = await start(nursery, slow, monitor(request_timeout_s=5.0))
    await trio.sleep(4.999)
    assert rig.polls("timeout") == 0
    await trio.sleep(0.002)
    assert cut_at == [5.0, 5.0]
    assert rig.polls("timeout") == 2
    # The cadence is kept: the next poll starts at 15 s, not 15 s after the timeout.
    await trio.sleep(15)
    assert [t for t, _ in rig.requests] == [0.0, 0.0, 15.0, 15.0]
    assert cut_at == [5.0, 5.0, 20.0, 20.0]
    assert rig.store.source_status()[PROMETHEUS] == (
        "failing: cpu query timeout: no answer within 5s; memory query timeout: no answer within 5s (never answered)"
    )
    nursery.cancel_scope.cancel()


async def test_a_timeout_longer_than_the_interval_skips_missed_ticks(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await trio.sleep(100)
        raise AssertionError("unreachable")

    rig = await start(nursery, slow, monitor(poll_interval_s=10.0, request_timeout_s=25.0))
    await trio.sleep(61)
    assert sorted({t for t, _ in rig.requests}) == [0.0, 30.0, 60.0]
    nursery.cancel_scope.cancel()


async def test_failures_keep_older_readings_until_two_poll_periods_passed(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    up = True

    async def flaky(request: httpx.Request) -> httpx.Response:
        if up:
            return await healthy(request)
        return httpx.Response(
            422, json={"status": "error", "errorType": "execution", "error": "many-to-many matching not allowed"}
        )

    rig = await start(nursery, flaky)
    await trio.sleep(1)
    up = False
    await trio.sleep(28.5)  # t=29.5: polls at 15 failed, readings from t=0 are 29.5 s old
    assert rig.polls("error") == 2
    assert rig.usage() == (PROMETHEUS, 0.30, 0.55)
    await trio.sleep(1)  # t=30.5: older than 2 x 15 s
    source, cpu, memory = rig.usage()
    assert (source, cpu, memory) == (REQUESTS, None, None)
    assert rig.store.usage(NODE_A).note == (
        "prometheus cpu stale (30.5s old, limit 30s); prometheus memory stale (30.5s old, limit 30s)"
    )
    status = rig.store.source_status()[PROMETHEUS]
    assert status.startswith("failing: cpu query error: query failed (execution): many-to-many matching not allowed")
    assert status.endswith("(last success 30s ago)")
    up = True
    await trio.sleep(15)
    assert rig.usage() == (PROMETHEUS, 0.30, 0.55)
    assert rig.store.source_status()[PROMETHEUS] == "ok (last poll 0s ago)"
    nursery.cancel_scope.cancel()


async def test_unreachable_and_bad_answers_are_counted_by_result(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    answers = iter(["refused", "html", "garbage-json"])
    current = "refused"

    async def handler(request: httpx.Request) -> httpx.Response:
        if current == "refused":
            raise httpx.ConnectError("Connection refused", request=request)
        if current == "html":
            return httpx.Response(502, text="<html>Bad Gateway</html>")
        return httpx.Response(200, text='{"status":"success","data":{"resultType":"vector","result":{}}}')

    rig = await start(nursery, handler)
    for expected in ("unreachable", "bad_response", "bad_response"):
        current = next(answers)
        await trio.sleep(15)
        assert rig.polls(expected) >= 2, expected
    assert rig.polls("unreachable") == 2
    assert rig.polls("bad_response") == 4
    nursery.cancel_scope.cancel()


async def test_c20_empty_results_are_counted_and_logged_once(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def empty(request: httpx.Request) -> httpx.Response:
        if is_cpu(request):
            return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": None}})
        return vector(({"node": "node-a"}, "0.55"))

    with caplog.at_level(logging.INFO, logger="edge_sched.adapters.prom_poller"):
        rig = await start(nursery, empty)
        await trio.sleep(61)
    assert rig.polls("empty") == 5
    assert rig.polls("ok") == 5
    empties = [r for r in caplog.records if "matched no usable series" in r.getMessage()]
    assert len(empties) == 1
    assert rig.usage(NODE_A) == (PROMETHEUS, None, 0.55)
    assert rig.usage(NODE_B) == (REQUESTS, None, None)
    nursery.cancel_scope.cancel()


async def test_skipped_and_unmatched_series_are_counted(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def odd(request: httpx.Request) -> httpx.Response:
        if not is_cpu(request):
            return vector()
        return vector(
            ({"instance": "10.0.0.5:9100"}, "NaN"),
            ({"instance": "10.0.0.50:9100"}, "+Inf"),
            ({"instance": "192.168.1.1:9100"}, "0.5"),  # matches no node
            ({"instance": "node-a:9100"}, "42"),  # not a ratio
        )

    rig = await start(nursery, odd)
    await trio.sleep(1)

    def skipped(reason: str) -> float:
        value = rig.metrics.registry.get_sample_value(
            "edge_sched_monitor_series_skipped_total", {"resource": "cpu", "reason": reason}
        )
        return value or 0.0

    assert (skipped("nan"), skipped("inf"), skipped("unmatched"), skipped("out_of_range")) == (1, 1, 1, 1)
    assert rig.polls("ok") == 1  # the unmatched series is a usable series
    assert rig.usage(NODE_A) == (REQUESTS, None, None)
    nursery.cancel_scope.cancel()


async def test_stale_series_in_a_fresh_answer_are_left_out(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    async def cached(request: httpx.Request) -> httpx.Response:
        # A caching query frontend answering with samples from 40 s ago.
        return vector(({"node": "node-a"}, "0.9"), ts=wall() - 40)

    rig = await start(nursery, cached)
    await trio.sleep(1)
    assert rig.usage() == (REQUESTS, None, None)
    assert rig.polls("empty") == 2
    nursery.cancel_scope.cancel()
