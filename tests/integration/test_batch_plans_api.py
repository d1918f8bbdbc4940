"""`POST /api/v1/scheduler/plans` (spec S10) against `edge-sched run` in standalone mode.

The nodes travel in the request (`Nodes`), as in the verbs with `nodeCacheCapable: false`;
the stored plans are then what prioritize scores and the read endpoints show.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.cluster.daemon import EdgeSchedDaemon
from tests.cluster.ports import free_port
from tests.integration.test_daemon_standalone import standalone_env


def node(name: str, cpu: str, memory: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}}


def pod(name: str, cpu: str = "1", memory: str = "1Gi", **selector: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}
    if selector:
        spec["nodeSelector"] = selector
    return {"metadata": {"name": name, "namespace": "batch", "uid": f"uid-{name}"}, "spec": spec}


NODES = {"items": [node("a", "4", "8Gi", zone="x"), node("b", "4", "8Gi", zone="y"), node("c", "2", "4Gi", zone="y")]}


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    tmp = tmp_path_factory.mktemp("batch")
    daemon = EdgeSchedDaemon.start(standalone_env(tmp, GA_SEED="7", API_AUTH_TOKEN="tok"), tmp, free_port())
    try:
        with httpx.Client(base_url=daemon.api_url, timeout=30, headers={"Authorization": "Bearer tok"}) as client:
            yield client
    finally:
        daemon.stop()


@pytest.mark.parametrize("algorithm", ["default", "genetic"])
def test_plan_places_every_pod_within_capacity_and_selectors(http: httpx.Client, algorithm: str) -> None:
    pods = [pod(f"{algorithm}-{i}") for i in range(6)] + [pod(f"{algorithm}-zoned", zone="x")]
    r = http.post("/scheduler/plans", json={"Pods": pods, "Nodes": NODES, "algorithm": algorithm})
    assert r.status_code == 201, r.text
    plan = r.json()
    assert plan["algorithm"] == algorithm
    assigned = plan["assignments"]
    # 7 one-core pods fit: a and b hold 4 each, c holds 2; the zoned pod only on a.
    assert len(assigned) == 7 and plan["unplaced"] == {}
    assert assigned[f"batch/{algorithm}-zoned"] == "a"
    per_node = {n: list(assigned.values()).count(n) for n in "abc"}
    assert per_node["a"] <= 4 and per_node["b"] <= 4 and per_node["c"] <= 2
    assert set(plan["components"]) == {"cpu", "memory", "balance"}
    assert 0 <= plan["fitness"] <= 1 and plan["elapsed_s"] >= 0
    assert plan["candidate_nodes"] == 3
    # the stored per-pod plan is what the read endpoints show, and prioritize scores it 10
    shown = http.get(f"/scheduler/plan/batch/{algorithm}-0").json()
    assert shown["selected_node"] == assigned[f"batch/{algorithm}-0"] and shown["algorithm"] == algorithm
    prio = http.post("/prioritize", json={"Pod": pods[0], "Nodes": NODES}).json()
    top = {h["Host"]: h["Score"] for h in prio}
    assert top[assigned[f"batch/{algorithm}-0"]] == 10
    assert all(s <= 9 for h, s in top.items() if h != assigned[f"batch/{algorithm}-0"])


def test_pods_that_cannot_fit_are_unplaced_with_a_reason(http: httpx.Client) -> None:
    pods = [pod("huge", cpu="16"), pod("nowhere", zone="z"), pod("ok")]
    plan = http.post("/scheduler/plans", json={"pods": pods, "nodes": NODES}).json()
    assert list(plan["assignments"]) == ["batch/ok"]
    assert "insufficient cpu (need 16, free 4)" in plan["unplaced"]["batch/huge"]
    assert "node selector mismatch" in plan["unplaced"]["batch/nowhere"]


def test_same_seed_gives_the_same_plan(http: httpx.Client) -> None:
    body = {"Pods": [pod(f"s{i}", cpu="500m", memory="512Mi") for i in range(10)], "Nodes": NODES,
            "algorithm": "genetic"}
    first, second = (http.post("/scheduler/plans", json=body).json() for _ in range(2))
    assert first["assignments"] == second["assignments"] and first["fitness"] == second["fitness"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "Pods: required"),
        ({"Pods": []}, "Pods: empty"),
        ({"Pods": {"a": 1}}, "Pods: expected a list of Pod objects, got dict"),
        ({"Pods": [3]}, "Pods[0]: expected a Pod object, got int"),
        ({"Pods": [pod("x"), pod("x")]}, "Pods[1]: duplicate pod batch/x (also Pods[0])"),
        ({"Pods": [pod("x", cpu="lots")]}, "Pods[0]"),
        ({"Pods": [pod("x")], "algorithm": "annealing"}, "algorithm: 'annealing' is not one of default, genetic"),
        ({"Pods": [pod("x")], "algoritm": "genetic"}, "algoritm: unknown field"),
        ({"Pods": [pod("x")], "Nodes": []}, "Nodes: expected a NodeList object, got list"),
        ({"Pods": [pod("x")], "Nodes": {"items": ["n"]}}, "Nodes.items[0]: expected a Node object, got str"),
        ([1, 2], "body: expected a JSON object, got list"),
    ],
)
def test_bad_bodies_get_400_naming_the_field(http: httpx.Client, body: Any, message: str) -> None:
    r = http.post("/scheduler/plans", json=body)
    assert r.status_code == 400, r.text
    assert message in r.json()["Error"]


def test_not_json_and_missing_token(http: httpx.Client) -> None:
    r = http.post("/scheduler/plans", content=b"{nope", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "body: invalid JSON" in r.json()["Error"]
    r = httpx.post(str(http.base_url) + "/scheduler/plans", json={"Pods": [pod("t")], "Nodes": NODES})
    assert r.status_code == 401
