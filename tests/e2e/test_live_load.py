"""Live node load against a real Prometheus (issue 5; spec S7, filter rule 4, the score).

A test-controlled exporter publishes per-node utilisation gauges; the Debian Prometheus
scrapes it every second; the daemon polls Prometheus through a `DelayProxy` (so a test can
make it slow) with MONITOR_CPU_QUERY / MONITOR_MEMORY_QUERY set to the exporter's gauges. The
real kube-scheduler calls the daemon as its extender.

Series map to nodes both ways the mapping supports: by a `node` label and by `instance`
= "<InternalIP>:9100" (ld-cool at 127.1.99.5 and ld-busy at 127.1.99.50: a prefix match would
mix them up).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from edge_sched.codecs.power_report import encode_report
from edge_sched.core.power import ComputeType, HostPower, PowerReport, PowerUnit
from tests.cluster import ControlPlane, Exporter, NodeSpec, Prometheus, wait_for
from tests.cluster.delay_proxy import DelayProxy
from tests.cluster.stack import EdgeStack, metric_value, pod_manifest, start_edge_stack

NS = "ld-e2e"
SCHEDULER = "ld-scheduler"
CPU_METRIC = "edge_test_node_cpu_utilisation"
MEMORY_METRIC = "edge_test_node_memory_utilisation"
SUITE = {"edge-sched.test/suite": "live-load"}
POLL_S = 1.0
TIMEOUT_S = 1.0

HOT, COOL, IDLE, BUSY = "ld-hot", "ld-cool", "ld-idle", "ld-busy"
NODES = [
    NodeSpec(HOT, cpu="8", memory="16Gi", labels={**SUITE, "ld-pair": "hot-cool"}),
    NodeSpec(COOL, cpu="8", memory="16Gi", labels={**SUITE, "ld-pair": "hot-cool"}, internal_ip="127.1.99.5"),
    NodeSpec(IDLE, cpu="8", memory="16Gi", labels={**SUITE, "ld-pair": "idle-busy"}),
    NodeSpec(BUSY, cpu="8", memory="16Gi", labels={**SUITE, "ld-pair": "idle-busy"}, internal_ip="127.1.99.50"),
]
# How each node's series is labelled (node label, or instance = InternalIP:port).
SERIES = {
    HOT: {"node": HOT},
    COOL: {"instance": "127.1.99.5:9100"},
    IDLE: {"node": IDLE},
    BUSY: {"instance": "127.1.99.50:9100"},
}
CPU = {HOT: 0.95, COOL: 0.20, IDLE: 0.20, BUSY: 0.70}


@attrs.define
class LiveLoad:
    cp: ControlPlane
    stack: EdgeStack
    exporter: Exporter
    prometheus: Prometheus
    proxy: DelayProxy
    workdir: Path

    @property
    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.stack.daemon.api_url, timeout=10)

    def health(self) -> dict[str, Any]:
        with self.api as api:
            return api.get("/scheduler/health").json()  # type: ignore[no-any-return]

    def load(self) -> dict[str, Any]:
        return self.health()["components"]["load"]  # type: ignore[no-any-return]

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.stack.daemon.metrics_port}/metrics", timeout=5).text

    def filter(self, *nodes: str, cpu: str = "100m") -> dict[str, Any]:
        with self.api as api:
            body = {"Pod": pod_manifest("probe", NS, cpu=cpu), "NodeNames": list(nodes)}
            return api.post("/filter", json=body).json()  # type: ignore[no-any-return]

    def prioritize(self, *nodes: str) -> dict[str, int]:
        with self.api as api:
            body = {"Pod": pod_manifest("probe", NS), "NodeNames": list(nodes)}
            return {p["Host"]: p["Score"] for p in api.post("/prioritize", json=body).json()}

    def wait_sources(self, expected: dict[str, str], timeout_s: float = 30) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            load = self.load()
            return load if all(load["nodes"].get(n) == s for n, s in expected.items()) else None

        return wait_for(reached, timeout_s, f"load sources {expected}", procs=[self.stack.daemon.proc])


@pytest.fixture(scope="module")
def live(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveLoad]:
    workdir = tmp_path_factory.mktemp("live-load")
    exporter = Exporter.start()
    for node, labels in SERIES.items():
        exporter.set(CPU_METRIC, labels, CPU[node])
        exporter.set(MEMORY_METRIC, labels, 0.30)
    prometheus = Prometheus.start(workdir / "prometheus", [exporter.addr], scrape_interval_s=1)
    proxy = DelayProxy(prometheus.url)
    control_plane.add_nodes(NODES)
    control_plane.create_namespace(NS)
    stack = None
    try:
        stack = start_edge_stack(
            control_plane,
            workdir / "daemon",
            {
                "MONITOR_API_URL": proxy.url,
                "MONITOR_CPU_QUERY": CPU_METRIC,
                "MONITOR_MEMORY_QUERY": MEMORY_METRIC,
                "MONITOR_POLL_INTERVAL": str(POLL_S),
                "MONITOR_REQUEST_TIMEOUT": str(TIMEOUT_S),
                # No computing-power router runs here: without this, the first filter of
                # a pod waits its router budget, which would blur the latency checks below.
                "COMPUTING_ROUTER_ENABLED": "false",
            },
            schedulers={SCHEDULER: True},
        )
        live = LiveLoad(control_plane, stack, exporter, prometheus, proxy, workdir)
        prometheus.wait_for_series(CPU_METRIC)
        live.wait_sources({n.name: "prometheus" for n in NODES})
        yield live
        prometheus = live.prometheus  # a test may have replaced it
    finally:
        if stack is not None:
            stack.stop()
        proxy.stop()
        prometheus.stop()
        exporter.stop()
        control_plane.delete(f"/api/v1/namespaces/{NS}")
        control_plane.delete_nodes(n.name for n in NODES)


def failed_scheduling(cp: ControlPlane, pod: str, needle: str) -> str:
    def message() -> str | None:
        events = cp.get(f"/api/v1/namespaces/{NS}/events", fieldSelector=f"involvedObject.name={pod}")
        found = [e.get("message", "") for e in events["items"] if e.get("reason") == "FailedScheduling"]
        return next((m for m in found if needle in m), None)

    return wait_for(message, 30, f"FailedScheduling event of {pod} containing {needle!r}")


def test_node_at_95_percent_fails_filter_with_the_number(live: LiveLoad) -> None:
    result = live.filter(HOT, COOL)
    assert result["FailedNodes"] == {HOT: "load too high: cpu usage 0.95 > threshold 0.85 (prometheus)"}
    assert result["NodeNames"] == [COOL]
    # Through the real kube-scheduler: a pod that may only go to ld-hot stays Pending and its
    # event carries edge-sched's reason; a pod that may use either lands on ld-cool.
    live.cp.apply([pod_manifest("only-hot", NS, scheduler=SCHEDULER, node_selector={"kubernetes.io/hostname": HOT})])
    try:
        message = failed_scheduling(live.cp, "only-hot", "cpu usage 0.95 > threshold 0.85")
        assert "load too high" in message
        assert not live.cp.pod(NS, "only-hot")["spec"].get("nodeName")
    finally:
        # Gone before another test lifts ld-hot's threshold (it would be bound there).
        live.cp.delete(f"/api/v1/namespaces/{NS}/pods/only-hot?gracePeriodSeconds=0")
    live.cp.apply([pod_manifest("hot-or-cool", NS, scheduler=SCHEDULER, node_selector={"ld-pair": "hot-cool"})])
    pod = live.cp.wait_for_pod_phase(NS, "hot-or-cool", "Running", timeout_s=30)
    assert pod["spec"]["nodeName"] == COOL


def test_annotation_raises_the_threshold_of_one_node(live: LiveLoad) -> None:
    def annotate(value: str | None) -> None:
        patch = {"metadata": {"annotations": {"edge-sched.io/cpu-threshold": value}}}
        with live.cp.client() as client:
            response = client.patch(
                f"/api/v1/nodes/{HOT}", json=patch, headers={"Content-Type": "application/merge-patch+json"}
            )
            response.raise_for_status()

    annotate("0.97")
    try:
        wait_for(lambda: live.filter(HOT)["NodeNames"] == [HOT], 15, "ld-hot passing under its 0.97 threshold")
    finally:
        annotate(None)
    wait_for(lambda: HOT in live.filter(HOT)["FailedNodes"], 15, "ld-hot failing again at the default threshold")


def test_idle_node_scores_higher_than_busy_node(live: LiveLoad) -> None:
    scores = live.prioritize(IDLE, BUSY)
    assert scores == {IDLE: 10, BUSY: 0}
    with live.api as api:
        plan = api.get(f"/scheduler/scores/{NS}/probe").json()["scores"]
    # 20 % vs 70 % measured CPU on otherwise identical, empty nodes.
    assert plan[IDLE]["components"]["cpu_free"] > plan[BUSY]["components"]["cpu_free"]
    live.cp.apply([pod_manifest("idle-or-busy", NS, scheduler=SCHEDULER, node_selector={"ld-pair": "idle-busy"})])
    pod = live.cp.wait_for_pod_phase(NS, "idle-or-busy", "Running", timeout_s=30)
    assert pod["spec"]["nodeName"] == IDLE


def test_exporter_change_reaches_decisions_within_a_few_polls(live: LiveLoad) -> None:
    live.exporter.set(CPU_METRIC, SERIES[BUSY], 0.99)
    try:
        reason = wait_for(lambda: live.filter(BUSY)["FailedNodes"].get(BUSY), 15, "ld-busy at 99 %")
        assert reason == "load too high: cpu usage 0.99 > threshold 0.85 (prometheus)"
    finally:
        live.exporter.set(CPU_METRIC, SERIES[BUSY], CPU[BUSY])
    wait_for(lambda: live.filter(BUSY)["NodeNames"] == [BUSY], 15, "ld-busy back at 70 %")


def test_prometheus_slower_than_the_timeout_is_cut_at_the_timeout(live: LiveLoad) -> None:
    before = metric_value(live.metrics(), 'edge_sched_monitor_polls_total{result="timeout"}')
    live.proxy.cut_after_s.clear()
    live.proxy.delay_s = 3 * TIMEOUT_S
    try:
        wait_for(
            lambda: metric_value(live.metrics(), 'edge_sched_monitor_polls_total{result="timeout"}') >= before + 4,
            20, "four timed-out queries",
        )
        cuts = list(live.proxy.cut_after_s)
        assert len(cuts) >= 4
        # The daemon hung up at its own 1 s timeout, long before the 3 s answer.
        assert all(0.9 <= c < 1.6 for c in cuts), cuts
        status = live.load()["sources"]["prometheus"]
        assert status.startswith("failing: ")
        assert "query timeout: no answer within 1s" in status
        # Every poll is cut, so after two poll periods the readings are stale and decisions
        # use the next source; the verbs never wait on the poll: filter answers at once.
        assert live.load()["nodes"][COOL] == "requests"
        started = time.monotonic()
        assert COOL in live.filter(HOT, COOL)["NodeNames"]
        assert time.monotonic() - started < 0.5
    finally:
        live.proxy.delay_s = 0
    wait_for(lambda: live.load()["sources"]["prometheus"].startswith("ok"), 15, "prometheus ok again")


def send_report(live: LiveLoad, node: str, load_pct: int) -> None:
    """One UDP computing-power report (S6.1) for `node`: 4 CPUs at `load_pct`, 16 GiB, 8 free."""
    import socket

    units = tuple(PowerUnit(2.5, load_pct) for _ in range(4))
    packet = encode_report(PowerReport(1, (HostPower(node, ComputeType.CPU, 16, 8, units),)))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(packet, ("127.0.0.1", live.stack.daemon.udp_port))


def test_prometheus_stopped_decisions_continue_from_the_next_source(live: LiveLoad) -> None:
    send_report(live, HOT, 95)
    live.prometheus.stop()
    try:
        # Two poll periods later Prometheus' readings are stale: ld-hot is judged by its UDP
        # report, the others (no metrics-server in this cluster, no reports) by requests only.
        load = live.wait_sources({HOT: "udp-report", COOL: "requests", IDLE: "requests", BUSY: "requests"})
        assert load["source"] == "mixed"
        assert load["sources"]["prometheus"].startswith("failing: ")
        assert "unreachable" in load["sources"]["prometheus"]
        assert load["sources"]["metrics.k8s.io"].startswith("failing: not served")
        result = live.filter(HOT, COOL)
        assert result["FailedNodes"] == {HOT: "load too high: cpu usage 0.95 > threshold 0.85 (udp-report)"}
        assert result["NodeNames"] == [COOL]
        # Scores now come from requests: ld-busy's 70 % is no longer known, and with no pods
        # on it, it scores best (ld-idle holds the pod an earlier test placed).
        assert live.prioritize(IDLE, BUSY)[BUSY] == 10
        live.cp.apply([pod_manifest("during-outage", NS, scheduler=SCHEDULER, node_selector={"ld-pair": "hot-cool"})])
        assert live.cp.wait_for_pod_phase(NS, "during-outage", "Running", timeout_s=30)["spec"]["nodeName"] == COOL
        text = live.metrics()
        assert metric_value(text, f'edge_sched_load_source{{node="{COOL}",source="requests"}}') == 1.0
        assert metric_value(text, f'edge_sched_load_source{{node="{HOT}",source="udp-report"}}') == 1.0
        assert metric_value(text, 'edge_sched_monitor_polls_total{result="unreachable"}') > 0
    finally:
        live.prometheus = Prometheus.start(live.workdir / "prometheus-2", [live.exporter.addr], scrape_interval_s=1)
        live.proxy.upstream = live.prometheus.url
    live.prometheus.wait_for_series(CPU_METRIC)
    live.wait_sources({n.name: "prometheus" for n in NODES})
