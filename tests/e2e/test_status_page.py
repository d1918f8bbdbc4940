"""The status page end to end: headless Chromium against edge-sched in cluster mode.

Three kwok nodes; two of them send UDP computing-power reports, one reports its status
over the WebSocket feed; the real kube-scheduler places two pods through the extender.
The page must show every node with its cluster facts (readiness, pods, requests against
allocatable), live usage, computing power by type, the reported status, and the two
binds in the decisions table; then a status reported after the page loaded must appear
without a reload. The screenshot is test-output/status-page.png.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from edge_sched.codecs.power_report import encode_report
from edge_sched.core.power import ComputeType, HostPower, PowerReport, PowerUnit
from tests.cluster import ControlPlane, NodeSpec, wait_for
from tests.cluster.stack import EdgeStack, pod_manifest, start_edge_stack
from tests.integration.browser import chromium, screenshot_path
from tests.integration.resource_status_helpers import UPDATE, ask

NS = "status-page-e2e"
SUITE = {"edge-sched.test/suite": "status-page"}
SCHEDULER = "status-page-scheduler"
GPU_NODE, CPU_NODE, QUIET_NODE = "sp-gpu-1", "sp-cpu-2", "sp-cpu-3"
NODES = [
    NodeSpec(GPU_NODE, cpu="8", memory="16Gi", gpu=2, labels={**SUITE, "topology.kubernetes.io/zone": "edge-a"}),
    NodeSpec(CPU_NODE, cpu="4", memory="8Gi", labels={**SUITE, "topology.kubernetes.io/zone": "edge-b"}),
    NodeSpec(QUIET_NODE, cpu="2", memory="4Gi", labels=SUITE),
]
PODS = ("sp-web-0", "sp-web-1")


def send_power_reports(stack: EdgeStack) -> None:
    hosts = (
        HostPower(GPU_NODE, ComputeType.CPU, 16, 10, (PowerUnit(2.5, 30), PowerUnit(2.5, 50))),
        HostPower(GPU_NODE, ComputeType.GPU, 16, 10, (PowerUnit(12.0, 25, 16.0), PowerUnit(12.0, 75, 16.0))),
        HostPower(CPU_NODE, ComputeType.CPU, 8, 2, (PowerUnit(3.0, 90),)),
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(encode_report(PowerReport(7, hosts)), ("127.0.0.1", stack.daemon.udp_port))


def report_status(stack: EdgeStack, node: str, **fields: Any) -> None:
    async def go() -> None:
        async with open_websocket_url(f"ws://127.0.0.1:{stack.daemon.port}/api/v1/resource-status/ws") as ws:
            reply = await ask(ws, {**UPDATE, "node_id": node, **fields})
            assert reply["type"] == "update_ack", reply
            await ws.aclose()

    trio.run(go)


@pytest.fixture(scope="module")
def stack(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeStack]:
    control_plane.add_nodes(NODES)
    control_plane.create_namespace(NS)
    started = start_edge_stack(
        control_plane, tmp_path_factory.mktemp("status-page"),
        {"RESOURCE_STATUS_UPDATE_INTERVAL": "0.5", "COMPUTING_ROUTER_ENABLED": "false"},
        schedulers={SCHEDULER: True},
    )
    try:
        with httpx.Client(base_url=started.daemon.api_url, timeout=10) as api:

            def powered() -> bool:
                send_power_reports(started)
                nodes = {e["node"] for e in api.get("/computing-power/nodes").json()["entries"]}
                return {GPU_NODE, CPU_NODE} <= nodes

            wait_for(powered, 30, "computing-power reports applied", procs=[started.daemon.proc])
            wait_for(lambda: api.get("/resource-status/health").json()["nodes"] >= 3, 30, "nodes in the cache")
        report_status(started, QUIET_NODE, cpu_status="available", cpu_usage=12, memory_usage=35,
                      memory_status="in_use", overall_load=21)
        control_plane.apply([pod_manifest(p, NS, scheduler=SCHEDULER, cpu="500m", memory="256Mi",
                                          node_selector=SUITE) for p in PODS])
        for pod in PODS:
            control_plane.wait_for_pod_phase(NS, pod, "Running", timeout_s=45)
        yield started
    finally:
        started.stop()
        control_plane.delete(f"/api/v1/namespaces/{NS}")
        control_plane.delete_nodes(n.name for n in NODES)


def test_status_page_shows_nodes_decisions_and_live_updates(control_plane: ControlPlane, stack: EdgeStack) -> None:
    placed = {p: control_plane.get(f"/api/v1/namespaces/{NS}/pods/{p}")["spec"]["nodeName"] for p in PODS}
    with chromium() as browser:
        # bypass_csp: the page forbids eval, which Playwright's wait_for_function uses.
        page = browser.new_page(viewport={"width": 1440, "height": 900}, bypass_csp=True)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(stack.daemon.url + "/ui")
        page.wait_for_selector("#conn[data-state=live]", timeout=15_000)
        page.wait_for_function("Number(document.body.dataset.updates || 0) >= 1", timeout=15_000)  # a live broadcast
        for node in (GPU_NODE, CPU_NODE, QUIET_NODE):
            assert page.locator(f"tr[data-node='{node}']").count() == 1

        gpu = page.locator(f"tr[data-node='{GPU_NODE}']")
        assert gpu.locator("[data-field=state]").inner_text() == "ready"
        assert "edge-a" in gpu.locator("[data-field=name]").inner_text()
        power = gpu.locator("[data-field=power]").inner_text()
        assert "CPU 3.0/5.0 GHz" in power and "GPU 12.0/24.0 TFLOPS" in power
        # What decisions use: the UDP report's load (30 + 50) / 2 plus, by hot-spot damping
        # (LOAD_HOTSPOT_DAMPING), the 500m of each pod placed there since (of 8 cores).
        on_gpu = list(placed.values()).count(GPU_NODE)
        assert gpu.locator("[data-field=cpu] .val").inner_text() == f"{40 + 6.25 * on_gpu:.1f}%"
        assert gpu.locator("[data-field=source]").inner_text() == "udp-report"
        cpu = page.locator(f"tr[data-node='{CPU_NODE}']")
        on_cpu = list(placed.values()).count(CPU_NODE)
        assert cpu.locator("[data-field=cpu] .val").inner_text() == f"{min(100.0, 90 + 12.5 * on_cpu):.1f}%"
        assert cpu.locator("[data-field=memory] .val").inner_text() == f"{75 + 3.125 * on_cpu:.1f}%"  # 1 - 2/8 GiB, damped
        quiet = page.locator(f"tr[data-node='{QUIET_NODE}']")
        assert quiet.locator("[data-field=source]").inner_text() == "status-report"
        assert quiet.locator("[data-field=cpu] .val").inner_text() == "12.0%"
        assert quiet.locator("[data-field=load]").inner_text() == "21.0%"

        # Cluster facts: each pod's 500m shows against its node's allocatable.
        for node in set(placed.values()):
            count = list(placed.values()).count(node)
            row = page.locator(f"tr[data-node='{node}']")
            assert row.locator("[data-field=pods]").inner_text().startswith(f"{count} / 110")
            expected = {1: "0.50 / 8", 2: "1 / 8"} if node == GPU_NODE else {1: "0.50 / ", 2: "1 / "}
            assert row.locator("[data-field=cpu_req]").inner_text().startswith(expected[count])

        # Decisions: both binds, newest first, pod -> node.
        page.wait_for_function(f"document.querySelectorAll('#decision-rows tr[data-pod]').length >= {len(PODS)}")
        decisions = page.eval_on_selector_all(
            "#decision-rows tr[data-pod]", "rows => rows.map(r => [...r.cells].map(c => c.innerText))"
        )
        shown = {d[1]: d[2] for d in decisions}
        for pod, node in placed.items():
            assert shown.get(f"{NS}/{pod}", shown.get(pod)) == node

        # A status reported now reaches the open page with the next broadcast.
        report_status(stack, CPU_NODE, cpu_status="error", overall_load=97)
        page.wait_for_selector(f"tr[data-node='{CPU_NODE}'] [data-field=load]:text('97.0%')", timeout=5_000)
        assert page.locator(f"tr[data-node='{CPU_NODE}'] .status-set .error").count() == 1
        page.screenshot(path=str(screenshot_path("status-page.png")))
        assert errors == []


def test_status_page_feed_has_cluster_facts(stack: EdgeStack) -> None:
    """The same facts over the feed itself, for clients other than the page."""

    async def go() -> dict[str, Any]:
        async with open_websocket_url(f"ws://127.0.0.1:{stack.daemon.port}/api/v1/resource-status/ws") as ws:
            reply = await ask(ws, {"request_id": "facts", "query": GPU_NODE})
            await ws.aclose()
            return reply

    record = trio.run(go)["nodes"][GPU_NODE]
    assert record["sources"] == ["cluster", "computing_power"]
    cluster = record["cluster"]
    assert cluster["ready"] is True and cluster["zone"] == "edge-a"
    assert cluster["allocatable"]["cpu"] == 8000 and cluster["allocatable"]["nvidia.com/gpu"] == 2
    assert json.dumps(record, allow_nan=False)
