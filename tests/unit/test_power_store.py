"""The power store (S6.1 state, S6.2 expiry) and the listener's per-datagram handling (C28)."""

from __future__ import annotations

import ipaddress
import logging
import socket

import attrs
import pytest
import trio
from prometheus_client import CollectorRegistry

from edge_sched.adapters.udp_listener import LogLimiter, ReportIngest, run_udp_listener
from edge_sched.codecs.power_report import encode_report
from edge_sched.core.power import ComputeType, HostPower, PowerReport, PowerUnit
from edge_sched.runtime.metrics import PowerMetrics, build_power_metrics
from edge_sched.runtime.power_store import PowerStore, ReportLoad
from edge_sched.settings import UdpSettings
from tests.unit.test_power_codec import seed_test_packet


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def report(report_id: int, *hosts: HostPower) -> PowerReport:
    return PowerReport(report_id, hosts)


def cpu(name: str, load: int = 50, power: float = 2.5, n: int = 2) -> HostPower:
    return HostPower(name, ComputeType.CPU, 32, 16, (PowerUnit(power, load),) * n)


def gpu(name: str, load: int = 10, tflops: float = 10.0) -> HostPower:
    return HostPower(name, ComputeType.GPU, 32, 16, (PowerUnit(tflops, load, 16.0),))


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# -- store -----------------------------------------------------------------------------------


def test_store_keeps_last_report_per_node_and_type() -> None:
    clock = Clock()
    store = PowerStore(expiry_s=600, clock=clock, wall_clock=lambda: 1.7e9)
    store.apply(report(1, cpu("a", load=50), gpu("a")))
    store.apply(report(2, cpu("a", load=90)))  # replaces a/cpu only
    power = store.node_power("a")
    assert power is not None
    assert power.entries[ComputeType.CPU].units[0].load_pct == 90
    assert power.available(ComputeType.GPU) == pytest.approx(9.0)
    assert [(f.entry.host.type, f.entry.report_id) for f in store.fresh("a")] == [
        (ComputeType.CPU, 2), (ComputeType.GPU, 1)
    ]
    assert store.node_power("unknown") is None
    assert store.latest_report_wall == 1.7e9


def test_expired_entries_are_ignored_at_once_and_swept_later() -> None:
    clock = Clock(100.0)
    store = PowerStore(expiry_s=60, clock=clock)
    store.apply(report(1, cpu("a"), gpu("a")))
    clock.now = 130.0
    store.apply(report(2, cpu("b")))
    clock.now = 160.0  # a is exactly 60 s old: still fresh
    assert store.fresh_node_count() == 2
    assert store.node_power("a") is not None
    clock.now = 160.5  # a expired; nothing swept yet, but no decision sees it
    assert store.node_power("a") is None
    assert [f.entry.host.name for f in store.fresh()] == ["b"]
    assert store.fresh_node_count() == 1
    assert store.stored_entry_count() == 3
    assert store.sweep() == 2
    assert store.stored_entry_count() == 1
    clock.now = 191.0
    assert store.sweep() == 1 and store.fresh_node_count() == 0


def test_a_fresh_type_keeps_a_node_with_an_expired_one() -> None:
    clock = Clock(0.0)
    store = PowerStore(expiry_s=10, clock=clock)
    store.apply(report(1, gpu("a")))
    clock.now = 8.0
    store.apply(report(2, cpu("a")))
    clock.now = 12.0
    power = store.node_power("a")
    assert power is not None and set(power.entries) == {ComputeType.CPU}
    assert store.sweep() == 1


def test_usage_from_reports_for_the_live_load_fallback() -> None:
    clock = Clock(0.0)
    store = PowerStore(expiry_s=10, clock=clock)
    store.apply(report(1, HostPower("a", ComputeType.CPU, 64, 16, (PowerUnit(2.0, 30), PowerUnit(2.0, 50)))))
    clock.now = 4.0
    store.apply(report(2, gpu("a")))  # newer: its memory (16 of 32 GiB free) is the node's
    load = store.usage("a")
    assert load.cpu is not None and load.memory is not None
    assert (load.cpu.value, load.cpu.observed_at) == (pytest.approx(0.4), 0.0)  # stamped on arrival
    assert (load.memory.value, load.memory.observed_at) == (pytest.approx(0.5), 4.0)
    assert store.usage("b") == ReportLoad(None, None)


def test_usage_outside_zero_to_one_is_left_out() -> None:
    store = PowerStore(expiry_s=10, clock=Clock())
    store.apply(report(1, HostPower("a", ComputeType.CPU, 16, 40, (PowerUnit(2.0, 30),))))  # 40 of 16 GiB free
    load = store.usage("a")
    assert load.memory is None and load.cpu is not None and load.cpu.value == pytest.approx(0.3)


def test_usage_is_the_same_object_until_the_node_reports_again_or_a_report_expires() -> None:
    # Readers keep what they derived from it while it is the same object (UsageStore.reader).
    clock = Clock(0.0)
    store = PowerStore(expiry_s=10, clock=clock)
    store.apply(report(1, cpu("a", load=20), cpu("b")))
    first = store.usage("a")
    clock.now = 9.0
    store.apply(report(2, gpu("a")))
    second = store.usage("a")
    assert second is not first and second == store.usage("a")
    assert store.usage("a") is second
    store.apply(report(3, cpu("b", load=70)))  # another node's report
    assert store.usage("a") is second
    clock.now = 10.5  # the CPU report expired: only the GPU one's memory is left
    third = store.usage("a")
    assert third is not second and third.cpu is None and third.memory is not None


# -- ingest ----------------------------------------------------------------------------------


def make_ingest(**udp: object) -> tuple[ReportIngest, PowerStore, CollectorRegistry]:
    registry = CollectorRegistry()
    store = PowerStore(expiry_s=600, clock=Clock())
    metrics = build_power_metrics(registry, store.fresh_node_count)
    cfg = UdpSettings(**udp)  # type: ignore[arg-type]
    return ReportIngest(cfg, store, metrics, LogLimiter(clock=Clock())), store, registry


C28_GARBAGE = [
    # C28's illustrative datagrams, read as S6.1 packets: all dropped, none raise.
    (b"", "truncated"),
    (b"\x45", "truncated"),
    (bytes.fromhex("4553 0101 0010 00000000"), "no_hosts"),  # host_number byte is 0x00
    (bytes.fromhex("4553 0101 ffff"), "truncated"),  # claims 255 hosts, carries 1 byte
    # The same faults in S6.1 terms: counts claiming more than arrived, extra bytes.
    (seed_test_packet()[:5] + b"\x00" * 10, "truncated"),
    (bytes.fromhex("00000001 ff"), "truncated"),
    (seed_test_packet() + bytes.fromhex("deadbeef"), "trailing_bytes"),
    (seed_test_packet()[:-4] + b"\x40\x20\x00\xff", "invalid_value"),  # load 255
]


@pytest.mark.parametrize(("data", "reason"), C28_GARBAGE)
def test_bad_datagrams_are_dropped_and_counted_by_reason(data: bytes, reason: str) -> None:
    ingest, store, registry = make_ingest()
    assert ingest.handle(data, "127.0.0.1") == reason
    assert store.stored_entry_count() == 0
    assert metric(registry, "computing_power_parse_errors_total", reason=reason) == 1
    assert metric(registry, "computing_power_reports_total") == 0


def test_valid_datagram_is_applied_and_counted() -> None:
    ingest, store, registry = make_ingest()
    assert ingest.handle(seed_test_packet(), "127.0.0.1") is None
    assert store.node_power("test-node-1") is not None
    assert metric(registry, "computing_power_reports_total") == 1
    assert metric(registry, "computing_power_nodes_total") == 1
    assert metric(registry, "computing_power_latest_report_timestamp") > 1.6e9


def test_a_packet_with_one_bad_entry_applies_nothing() -> None:
    good = encode_report(report(1, cpu("a"), gpu("b")))
    bad = bytearray(good)
    bad[-1] = 101  # b's GPU load
    ingest, store, _ = make_ingest()
    assert ingest.handle(bytes(bad), "127.0.0.1") == "invalid_value"
    assert store.node_power("a") is None and store.node_power("b") is None


def test_oversize_datagram_rejected_not_decoded_from_a_cut_prefix() -> None:
    ingest, store, registry = make_ingest(buffer_size=64)
    # What recvfrom_into hands over when the datagram did not fit: buffer_size + 1 bytes.
    assert ingest.handle(seed_test_packet()[:65], "127.0.0.1") == "oversize"
    assert metric(registry, "computing_power_parse_errors_total", reason="oversize") == 1
    assert store.stored_entry_count() == 0


def test_allowlist_drops_other_senders() -> None:
    ingest, store, registry = make_ingest(allowed_sources=(ipaddress.ip_network("10.0.0.0/8"),))
    assert ingest.handle(seed_test_packet(), "192.168.1.5") == "source_not_allowed"
    assert ingest.handle(seed_test_packet(), "::ffff:10.1.2.3") is None
    assert metric(registry, "computing_power_parse_errors_total", reason="source_not_allowed") == 1
    assert store.fresh_node_count() == 1


def test_a_bug_in_apply_costs_one_datagram_not_the_listener() -> None:
    class Broken:
        def apply(self, report: PowerReport) -> None:
            raise RuntimeError("boom")

    registry = CollectorRegistry()
    metrics = build_power_metrics(registry, lambda: 0)
    ingest = ReportIngest(UdpSettings(), Broken(), metrics)
    assert ingest.handle(seed_test_packet(), "127.0.0.1") == "internal_error"


def test_garbage_flood_is_logged_at_a_bounded_rate(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(0.0)
    registry = CollectorRegistry()
    store = PowerStore(expiry_s=600, clock=clock)
    ingest = ReportIngest(UdpSettings(), store, build_power_metrics(registry, store.fresh_node_count),
                          LogLimiter(interval_s=10, burst=5, clock=clock))
    with caplog.at_level(logging.WARNING, logger="edge_sched.adapters.udp_listener"):
        for _ in range(10_000):
            ingest.handle(b"\x00garbage", "127.0.0.1")
        clock.now = 10.0
        ingest.handle(b"\x00garbage", "127.0.0.1")
    assert len(caplog.records) == 6
    assert "9995 more bad reports were not logged" in caplog.records[-1].getMessage()
    assert metric(registry, "computing_power_parse_errors_total", reason="truncated") == 10_001


# -- the listener on a real socket ------------------------------------------------------------


async def test_listener_over_loopback(nursery: trio.Nursery) -> None:
    registry = CollectorRegistry()
    store = PowerStore(expiry_s=600)
    metrics: PowerMetrics = build_power_metrics(registry, store.fresh_node_count)
    port = await nursery.start(_listen_on_free_port, store, metrics)
    sock = trio.socket.socket(type=trio.socket.SOCK_DGRAM)
    with sock:
        for data in (b"\x01", seed_test_packet() + b"x" * 200, seed_test_packet()):
            await sock.sendto(data, ("127.0.0.1", port))
        with trio.fail_after(5):
            while metric(registry, "computing_power_reports_total") < 1:
                await trio.sleep(0.01)
    assert metric(registry, "computing_power_parse_errors_total", reason="truncated") == 1
    assert metric(registry, "computing_power_parse_errors_total", reason="oversize") == 1
    assert store.node_power("test-node-1") is not None


async def _listen_on_free_port(
    store: PowerStore, metrics: PowerMetrics, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    # UDP_SERVICE_PORT must be 1..65535 (no port 0), so pick a free one first.
    cfg = attrs.evolve(UdpSettings(host="127.0.0.1", buffer_size=128), port=_free_udp_port())
    await run_udp_listener(cfg, store, metrics, task_status=task_status)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_health_shows_the_listener_and_a_taken_port(nursery: trio.Nursery) -> None:
    from edge_sched.runtime.power import build_power_service
    from edge_sched.settings import Settings

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        taken = busy.getsockname()[1]
        settings = Settings()
        settings = attrs.evolve(settings, udp=attrs.evolve(settings.udp, host="127.0.0.1", port=taken))
        power = build_power_service(settings, CollectorRegistry())
        assert power.health()["listener"] == "starting"
        with pytest.raises(OSError):
            await power.serve_reports()
        assert power.health()["listener"].startswith(f"failing: cannot listen on udp 127.0.0.1:{taken}: ")
    free = _free_udp_port()
    power = build_power_service(attrs.evolve(settings, udp=attrs.evolve(settings.udp, port=free)), CollectorRegistry())
    nursery.start_soon(power.serve_reports)
    with trio.fail_after(5):
        while not power.listener_state.startswith("listening"):
            await trio.sleep(0.01)
    assert power.health() == {
        "listener": f"listening on udp 127.0.0.1:{free}", "fresh_nodes": 0, "router": "not asked yet", "rule5": "on"
    }


def test_a_reader_answers_like_node_power() -> None:
    clock = Clock()
    store = PowerStore(expiry_s=600, clock=clock, wall_clock=lambda: 1.7e9)
    store.apply(report(1, cpu("a")))
    read = store.reader()
    assert read("a") == store.node_power("a") is not None
    assert read("unknown") is None
