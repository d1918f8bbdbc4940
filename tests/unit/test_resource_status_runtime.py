"""Resource-status runtime (spec S8) on virtual time: bounded client output, the per-write
deadline, coalescing, the broadcaster's schedule, cleanup, node records and the
live-usage source fed by reported statuses."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from edge_sched.codecs.resource_status import StatusReport, decode_message
from edge_sched.core.load import PROMETHEUS, Reading, SeriesIndex
from edge_sched.core.model import NodeInfo, PlacedPod
from edge_sched.core.power import ComputeType, HostPower, PowerReport, PowerUnit
from edge_sched.runtime.cluster import ClusterCache
from edge_sched.runtime.power_store import PowerStore
from edge_sched.runtime.resource_status import (
    REPLY_QUEUE,
    STATUS_REPORT,
    Client,
    ClientSet,
    CloseFrame,
    OutFrame,
    ResourceStatusService,
    StatusBook,
    build_resource_status,
    build_resource_status_metrics,
    pump,
    run_broadcaster,
    run_cleanup,
)
from edge_sched.runtime.usage import UsageStore
from edge_sched.settings import ResourceStatusSettings

GI = 1 << 30
UPDATE: dict[str, Any] = {
    "request_id": "u1", "node_id": "node-a", "status_id": 1,
    "cpu_status": "busy", "cpu_usage": 91.5, "gpu_status": "offline", "gpu_usage": 0,
    "memory_status": "in_use", "memory_usage": 40, "disk_status": "available", "disk_usage": 10,
    "network_status": "available", "network_usage": 5, "overall_load": 70,
}


def settings(**kw: Any) -> ResourceStatusSettings:
    base = {"enabled": True, "update_interval_s": 5.0, "cleanup_interval_s": 60.0, "max_connections": 3,
            "broadcast_timeout_s": 2.0}
    return ResourceStatusSettings(**{**base, **kw})


def report(node: str = "node-a", **changes: Any) -> StatusReport:
    decoded = decode_message(json.dumps({**UPDATE, "node_id": node, **changes}))
    assert isinstance(decoded, StatusReport)
    return decoded


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    got = registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


@attrs.define
class Aborts:
    """The transport side of a client: counts resets and releases a stuck write."""

    calls: int = 0
    released: trio.Event = attrs.field(factory=trio.Event)

    def __call__(self) -> bool:
        self.calls += 1
        self.released.set()
        return True


def make_set(max_connections: int = 3) -> tuple[ClientSet, CollectorRegistry]:
    registry = CollectorRegistry()
    return ClientSet(max_connections, build_resource_status_metrics(registry)), registry


# -- clients ------------------------------------------------------------------------------


async def test_admit_up_to_the_limit_then_refuse() -> None:
    clients, registry = make_set(2)
    a = clients.admit("a", Aborts())
    b = clients.admit("b", Aborts())
    assert a is not None and b is not None
    assert clients.admit("c", Aborts()) is None
    assert value(registry, "resource_status_connections_total") == 2
    assert value(registry, "resource_status_errors_total", reason="over_capacity") == 1
    clients.remove(a)
    assert value(registry, "resource_status_connections_total") == 1
    assert clients.admit("d", Aborts()) is not None


async def test_close_goes_first_then_replies_then_the_latest_broadcast_only() -> None:
    clients, _ = make_set()
    client = clients.admit("a", Aborts())
    assert client is not None
    assert client.offer_broadcast(OutFrame("status_update", "b1")) is False
    assert client.offer_broadcast(OutFrame("status_update", "b2")) is True  # coalesced: b1 is gone
    await client.reply(OutFrame("query_result", "r1"))
    assert await client.next_frame() == OutFrame("query_result", "r1")
    assert await client.next_frame() == OutFrame("status_update", "b2")
    client.offer_broadcast(OutFrame("status_update", "b3"))
    client.request_close(1009, "too big")
    assert await client.next_frame() == CloseFrame(1009, "too big")
    assert client.offer_broadcast(OutFrame("status_update", "b4")) is False  # nothing after a close


async def test_replies_wait_when_the_queue_is_full(autojump_clock: trio.testing.MockClock) -> None:
    clients, _ = make_set()
    client = clients.admit("a", Aborts())
    assert client is not None
    for i in range(REPLY_QUEUE):
        await client.reply(OutFrame("query_result", str(i)))
    with trio.move_on_after(10) as waited:
        await client.reply(OutFrame("query_result", "one too many"))
    assert waited.cancelled_caught  # the reader of this client waits; nothing grows


async def test_a_stuck_write_drops_the_client_at_the_deadline(autojump_clock: trio.testing.MockClock) -> None:
    """C25 at unit level: the write never completes on its own (like Hypercorn's shielded
    send_all to a peer that stopped reading); at exactly the deadline the transport is reset."""
    clients, registry = make_set()
    aborts = Aborts()
    client = clients.admit("stalled", aborts)
    assert client is not None
    started = trio.current_time()

    async def stuck_send(text: str) -> None:
        with trio.CancelScope(shield=True):  # cancellation cannot reach it, only a reset can
            await aborts.released.wait()

    async def close(code: int, reason: str) -> None:
        raise AssertionError("no close frame for a dropped client")

    client.offer_broadcast(OutFrame("status_update", "x"))
    with client.cancel_scope:
        await pump(client, clients, stuck_send, close, timeout_s=2.0)
    assert trio.current_time() - started == 2.0
    assert aborts.calls == 1
    assert client.dropped == "could not take a status_update message within 2s"
    assert len(clients) == 0
    assert value(registry, "resource_status_errors_total", reason="send_timeout") == 1
    assert value(registry, "resource_status_connections_total") == 0


async def test_a_send_that_fails_is_an_ordinary_close(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """C26 at unit level: the peer started closing and the write raises; the pump returns
    quietly (no traceback, nothing counted as an error) and the connection ends."""

    class LocalProtocolError(Exception):
        pass

    clients, registry = make_set()
    client = clients.admit("closing", Aborts())
    assert client is not None

    async def send(text: str) -> None:
        raise LocalProtocolError("Event TextMessage cannot be sent in state CLOSED")

    async def close(code: int, reason: str) -> None:
        raise AssertionError("unexpected")

    client.offer_broadcast(OutFrame("status_update", '{"type":"node_update","node":"node-a"}'))
    with caplog.at_level(logging.DEBUG):
        await pump(client, clients, send, close, timeout_s=2.0)
    assert trio.current_time() == 0.0
    assert all(r.exc_info is None and r.levelno < logging.WARNING for r in caplog.records)
    assert "connection closed while sending status_update (LocalProtocolError)" in caplog.text
    assert registry.get_sample_value("resource_status_errors_total", {"reason": "send_timeout"}) is None


async def test_pump_sends_the_close_frame_and_stops(autojump_clock: trio.testing.MockClock) -> None:
    clients, registry = make_set()
    client = clients.admit("a", Aborts())
    assert client is not None
    sent: list[Any] = []

    async def send(text: str) -> None:
        sent.append(text)

    async def close(code: int, reason: str) -> None:
        sent.append((code, reason))

    await client.reply(OutFrame("error", "e1"))
    client.request_close(1009, "message over 65536 bytes")
    await pump(client, clients, send, close, timeout_s=2.0)
    assert sent == [(1009, "message over 65536 bytes")]  # the close preempts queued replies


# -- broadcaster and cleanup ----------------------------------------------------------------


def service_with(
    nodes: list[str], *, interval: float = 5.0, timeout: float = 2.0, cleanup: float = 60.0, max_age: float = 600.0
) -> tuple[ResourceStatusService, ClusterCache, CollectorRegistry]:
    cache = ClusterCache()
    cache.replace_nodes(NodeInfo(n, {"cpu": 4000, "memory": 8 * GI, "pods": 110}) for n in nodes)
    cache.replace_pods([])
    registry = CollectorRegistry()
    service = build_resource_status(
        settings(update_interval_s=interval, broadcast_timeout_s=timeout, cleanup_interval_s=cleanup),
        registry, cache, report_max_age_s=max_age, power=None, usage=None,
    )
    return service, cache, registry


async def connect(
    nursery: trio.Nursery, service: ResourceStatusService, send: Callable[[str], Any], aborts: Aborts | None = None
) -> Client:
    client = service.clients.admit("peer", aborts or Aborts())
    assert client is not None

    async def close(code: int, reason: str) -> None:
        pass

    async def run() -> None:
        with client.cancel_scope:
            await pump(client, service.clients, send, close, service.settings.broadcast_timeout_s)

    nursery.start_soon(run)
    return client


async def test_broadcasts_keep_their_schedule_while_a_stalled_client_is_dropped(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    service, _, registry = service_with(["node-a", "node-b"], interval=5.0, timeout=2.0)
    healthy: list[tuple[float, dict[str, Any]]] = []

    async def healthy_send(text: str) -> None:
        healthy.append((trio.current_time(), json.loads(text)))

    aborts = Aborts()

    async def stalled_send(text: str) -> None:
        with trio.CancelScope(shield=True):
            await aborts.released.wait()

    await connect(nursery, service, healthy_send)
    stalled = await connect(nursery, service, stalled_send, aborts)
    nursery.start_soon(run_broadcaster, service)
    await trio.sleep(31)
    assert [t for t, _ in healthy] == [5.0, 10.0, 15.0, 20.0, 25.0, 30.0]
    assert all(frame["type"] == "status_update" and set(frame["nodes"]) == {"node-a", "node-b"} for _, frame in healthy)
    assert stalled.dropped is not None and aborts.calls == 1  # at 5 + 2 s
    assert len(service.clients) == 1
    assert value(registry, "resource_status_broadcast_duration_seconds_count") == 6
    assert service.health()["broadcasts"] == 6 and service.health()["dropped_clients"] == 1


async def test_no_clients_no_broadcast_work(autojump_clock: trio.testing.MockClock, nursery: trio.Nursery) -> None:
    service, _, registry = service_with(["node-a"])
    nursery.start_soon(run_broadcaster, service)
    await trio.sleep(20)
    assert service.stats.count == 0
    assert value(registry, "resource_status_broadcast_duration_seconds_count") == 0


async def test_cleanup_expires_reported_statuses(autojump_clock: trio.testing.MockClock, nursery: trio.Nursery) -> None:
    service, _, _ = service_with(["node-a", "node-b"], cleanup=60.0, max_age=90.0)
    service.book.apply(report("node-a"))
    nursery.start_soon(run_cleanup, service)
    await trio.sleep(61)
    assert service.book.reported_count() == 1
    await trio.sleep(60)  # 121 s: past 90 s, swept at 120 s
    assert service.book.reported("node-a") is None
    assert service.book._reported == {}


async def test_cleanup_removes_clients_stuck_past_the_timeout(autojump_clock: trio.testing.MockClock) -> None:
    service, _, registry = service_with(["node-a"], timeout=2.0)
    aborts = Aborts()
    client = service.clients.admit("peer", aborts)
    assert client is not None
    client.sending_since = trio.current_time()
    await trio.sleep(3)
    assert service.cleanup() == (1, 0)
    assert aborts.calls == 1 and len(service.clients) == 0
    assert value(registry, "resource_status_errors_total", reason="send_timeout") == 1


# -- messages and records -------------------------------------------------------------------


async def test_query_update_and_their_errors() -> None:
    service, _, registry = service_with(["node-a"])
    ok = json.loads((await service.handle_message(json.dumps(UPDATE), may_update=True)).text)
    assert ok == {"request_id": "u1", "type": "update_ack", "success": True, "node_id": "node-a", "status_id": 1}
    unknown = json.loads((await service.handle_message(json.dumps({**UPDATE, "node_id": "ghost"}), may_update=True)).text)
    assert unknown["type"] == "error" and unknown["request_id"] == "u1"
    assert unknown["error"].startswith("node_id: node 'ghost' is not known")
    denied = json.loads((await service.handle_message(json.dumps(UPDATE), may_update=False)).text)
    assert denied["type"] == "error" and "Authorization: Bearer" in denied["error"]
    one = json.loads((await service.handle_message('{"request_id": "q", "query": "node-a"}', may_update=False)).text)
    assert one["type"] == "query_result" and list(one["nodes"]) == ["node-a"]
    assert one["nodes"]["node-a"]["reported"]["cpu_status"] == "busy"
    missing = json.loads((await service.handle_message('{"request_id": "q2", "query": "ghost"}', may_update=False)).text)
    assert missing == {"request_id": "q2", "type": "error", "error": "query: node 'ghost' is not known"}
    bad = json.loads((await service.handle_message("{", may_update=True)).text)
    assert bad["type"] == "error" and bad["request_id"] is None
    assert value(registry, "resource_status_messages_total", direction="in", type="update") == 3
    assert value(registry, "resource_status_messages_total", direction="in", type="query") == 2
    assert value(registry, "resource_status_messages_total", direction="in", type="invalid") == 1
    assert value(registry, "resource_status_errors_total", reason="unknown_node") == 2
    assert value(registry, "resource_status_errors_total", reason="unauthorized") == 1
    assert value(registry, "resource_status_errors_total", reason="invalid_json") == 1


def power_report(node: str, cpu_load: int, *, mem: tuple[int, int] = (16, 8)) -> PowerReport:
    return PowerReport(1, (HostPower(node, ComputeType.CPU, mem[0], mem[1], (PowerUnit(2.5, cpu_load),)),))


@attrs.define
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def test_nodes_known_from_reports_and_the_usage_fallback_order() -> None:
    """Without Prometheus: UDP report load first, then the reported status, then requests."""
    clock = Clock()
    cache = ClusterCache(clock=clock)
    cache.replace_nodes([NodeInfo("k8s-only", {"cpu": 2000})])
    cache.upsert_pod(PlacedPod("u", "ns", "p", "k8s-only", {"cpu": 500}))
    power = PowerStore(600.0, clock=clock, wall_clock=lambda: 1.7e9)
    power.apply(power_report("udp-node", 30))
    book = StatusBook(cache, 300.0, power=power, clock=clock, wall_clock=lambda: 1.7e9)
    assert book.known("k8s-only") and book.known("udp-node") and not book.known("ghost")
    book.apply(report("udp-node", cpu_usage=80))
    book.apply(report("k8s-only", cpu_usage=65, memory_usage=20))
    records = book.records()
    assert list(records) == ["k8s-only", "udp-node"]
    assert records["udp-node"]["usage"] == {"source": "udp-report", "cpu_pct": 30.0, "memory_pct": 50.0, "note": ""}
    assert records["k8s-only"]["usage"]["source"] == STATUS_REPORT
    assert (records["k8s-only"]["usage"]["cpu_pct"], records["k8s-only"]["usage"]["memory_pct"]) == (65.0, 20.0)
    assert records["k8s-only"]["cluster"]["requested"] == {"cpu": 500} and records["k8s-only"]["cluster"]["pod_count"] == 1
    assert records["udp-node"]["computing_power"]["cpu"]["available"] == 1.75
    clock.now += 301  # the reported statuses expire; the UDP report (600 s) does not
    records = book.records()
    assert records["k8s-only"]["usage"]["source"] == "requests" and records["k8s-only"]["reported"] is None
    assert records["udp-node"]["reported"] is None


def test_reported_status_joins_the_usage_store_after_the_measured_sources() -> None:
    clock = Clock()
    cache = ClusterCache(clock=clock)
    cache.replace_nodes([NodeInfo("a"), NodeInfo("b")])
    usage = UsageStore(clock=clock)
    usage.enable(PROMETHEUS, 30.0)
    usage.publish(PROMETHEUS, "cpu", SeriesIndex.of_nodes({"a": Reading(0.5, clock.now)}))
    usage.publish(PROMETHEUS, "memory", SeriesIndex.of_nodes({"a": Reading(0.25, clock.now)}))
    service = build_resource_status(
        settings(), CollectorRegistry(), cache, report_max_age_s=600.0, power=None, usage=usage
    )
    service.book.clock = clock
    service.book.apply(report("a", cpu_usage=99))
    service.book.apply(report("b", cpu_usage=12, memory_usage=34))
    records = service.book.records()
    assert records["a"]["usage"]["source"] == PROMETHEUS and records["a"]["usage"]["cpu_pct"] == 50.0
    assert records["b"]["usage"]["source"] == STATUS_REPORT
    assert (records["b"]["usage"]["cpu_pct"], records["b"]["usage"]["memory_pct"]) == (12.0, 34.0)
