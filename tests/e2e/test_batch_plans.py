"""Batch plans (spec S10) followed by the real kube-scheduler (issue 7).

One daemon with OPTIMIZER_ALGORITHM=genetic packing by CPU (GA_WEIGHT_CPU=1), so a plan
puts pods where kube-scheduler's own scores (least allocated) would not: a pod that lands
on its planned node got there because prioritize scored the plan and bind followed it.
PLAN_EXPIRATION_TIME is short so the expired-plan case waits seconds, not minutes.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.cluster import ControlPlane, NodeSpec
from tests.cluster.stack import EdgeStack, metric_value, pod_manifest, start_edge_stack

NS = "bp-e2e"
LABEL = {"edge-sched.test/suite": "batch-plans"}
NODES = [
    NodeSpec("bp-1", cpu="4", memory="8Gi", labels=LABEL),
    NodeSpec("bp-2", cpu="4", memory="8Gi", labels=LABEL),
    NodeSpec("bp-3", cpu="8", memory="16Gi", labels=LABEL),
    NodeSpec("bp-4", cpu="8", memory="16Gi", labels=LABEL),
    NodeSpec("bp-5", cpu="16", memory="32Gi", labels=LABEL),
]
EXPIRY_S = 20.0
ENV = {
    "OPTIMIZER_ALGORITHM": "genetic",
    "GA_SEED": "1",
    "GA_WEIGHT_CPU": "1",
    "GA_WEIGHT_MEMORY": "0",
    "GA_WEIGHT_BALANCE": "0",
    "PLAN_EXPIRATION_TIME": str(EXPIRY_S),
}
CPUS = ("250m", "500m", "1")


@pytest.fixture(scope="module")
def stack(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeStack]:
    control_plane.add_nodes(NODES)
    control_plane.create_namespace(NS)
    s = start_edge_stack(control_plane, tmp_path_factory.mktemp("batch-plans"), ENV)
    try:
        yield s
    finally:
        s.stop()
        control_plane.delete(f"/api/v1/namespaces/{NS}")
        control_plane.delete_nodes(n.name for n in NODES)


@pytest.fixture
def api(stack: EdgeStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.daemon.api_url, timeout=30) as client:
        yield client


def pods(prefix: str, count: int) -> list[dict[str, Any]]:
    return [pod_manifest(f"{prefix}-{i:02d}", NS, cpu=CPUS[i % 3], memory="256Mi", node_selector=LABEL)
            for i in range(count)]


def node_of(cp: ControlPlane, name: str) -> str:
    return str(cp.wait_for_pod_phase(NS, name, "Running", timeout_s=90)["spec"]["nodeName"])


def overrides(stack: EdgeStack) -> float:
    """Binds that followed a plan instead of kube-scheduler's choice."""
    text = httpx.get(f"http://127.0.0.1:{stack.daemon.metrics_port}/metrics", timeout=5).text
    return metric_value(text, "edge_sched_bind_plan_overrides_total")


def test_thirty_pods_land_on_their_planned_nodes(control_plane: ControlPlane, stack: EdgeStack,
                                                 api: httpx.Client) -> None:
    batch = pods("planned", 30)
    r = api.post("/scheduler/plans", json={"Pods": batch})
    assert r.status_code == 201, r.text
    plan = r.json()
    assert plan["algorithm"] == "genetic" and plan["unplaced"] == {}
    assigned = plan["assignments"]
    assert len(assigned) == 30
    # Packing by CPU: 17.5 cores of pods need at most two of the five nodes' 40 cores.
    assert len(set(assigned.values())) <= 3, assigned
    control_plane.apply(batch)
    landed = {f"{NS}/{p['metadata']['name']}": node_of(control_plane, p["metadata"]["name"]) for p in batch}
    assert landed == assigned
    decision = api.get("/scheduler/decisions").json()["decisions"]
    assert any(d.get("pod") == f"{NS}/planned-00" for d in decision)


def test_an_expired_plan_is_not_followed(control_plane: ControlPlane, stack: EdgeStack, api: httpx.Client) -> None:
    late = pod_manifest("late", NS, cpu="1", memory="256Mi", node_selector=LABEL)
    r = api.post("/scheduler/plans", json={"Pods": [late]})
    assert r.status_code == 201, r.text
    planned = r.json()["assignments"][f"{NS}/late"]
    assert api.get(f"/scheduler/plan/{NS}/late").json()["selected_node"] == planned
    time.sleep(EXPIRY_S + 1)
    assert api.get(f"/scheduler/plan/{NS}/late").status_code == 404  # expired: gone from the read API
    before = overrides(stack)
    control_plane.apply([late])
    node = node_of(control_plane, "late")
    # Packing chose the fullest node that fits; without the plan, least-allocated scoring
    # (edge-sched's and kube-scheduler's) picks an emptier one.
    assert node != planned
    assert overrides(stack) == before
