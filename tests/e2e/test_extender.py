"""The real kube-scheduler calls edge-sched and real pods get bound (issues 2, 3).

One daemon (least-privilege ServiceAccount token) and two kube-schedulers: the
profile `edge-scheduler` (nodeCacheCapable: true, NodeNames on the wire) and
`edge-objects` (nodeCacheCapable: false, full Node objects on the wire).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.cluster import ControlPlane, NodeSpec, wait_for
from tests.cluster.stack import EdgeStack, metric_value, pod_manifest, start_edge_stack

NS = "es-e2e"
LABEL = {"edge-sched.test/suite": "extender"}
NODES = [
    NodeSpec("es-small", cpu="2", memory="4Gi", labels=LABEL),
    NodeSpec("es-big", cpu="16", memory="32Gi", labels=LABEL),
    NodeSpec("es-gpu", cpu="4", memory="8Gi", gpu=2, labels=LABEL),
    NodeSpec("es-zone", cpu="2", memory="4Gi", labels={**LABEL, "zone": "edge-b"}),
]


@pytest.fixture(scope="module")
def stack(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeStack]:
    control_plane.add_nodes(NODES)
    control_plane.create_namespace(NS)
    s = start_edge_stack(
        control_plane,
        tmp_path_factory.mktemp("extender"),
        schedulers={"edge-scheduler": True, "edge-objects": False},
    )
    try:
        yield s
    finally:
        s.stop()
        control_plane.delete(f"/api/v1/namespaces/{NS}")
        control_plane.delete_nodes(n.name for n in NODES)


@pytest.fixture
def api(stack: EdgeStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.daemon.api_url, timeout=10) as client:
        yield client


def metrics(stack: EdgeStack) -> str:
    return httpx.get(f"http://127.0.0.1:{stack.daemon.metrics_port}/metrics", timeout=5).text


def create(cp: ControlPlane, doc: dict[str, Any]) -> None:
    cp.apply([doc])


def node_of(cp: ControlPlane, name: str, timeout_s: float = 30) -> str:
    pod = cp.wait_for_pod_phase(NS, name, "Running", timeout_s=timeout_s)
    return str(pod["spec"]["nodeName"])


def cache_shows(api: httpx.Client, node: str, predicate: Any) -> Any:
    """Ask filter about one node (NodeNames form) until `predicate(result)` holds."""

    def probe() -> Any:
        body = {"Pod": pod_manifest("probe", NS, cpu="1500m"), "NodeNames": [node]}
        result = api.post("/filter", json=body).json()
        return result if predicate(result) else None

    return wait_for(probe, 30, f"cache view of {node}")


def test_health_shows_cluster_mode_with_synced_cache(api: httpx.Client) -> None:
    health = api.get("/scheduler/health").json()
    assert health["mode"] == "cluster"
    assert health["components"]["kubernetes"] == "synced"


def test_pod_is_bound_through_the_extender(control_plane: ControlPlane, stack: EdgeStack) -> None:
    before = metrics(stack)
    create(control_plane, pod_manifest("web-1", NS, cpu="500m", node_selector=LABEL))
    # es-big is the emptiest node by the default score (most free CPU and memory).
    assert node_of(control_plane, "web-1") == "es-big"
    with httpx.Client(base_url=stack.daemon.api_url) as api:
        decisions = api.get("/scheduler/decisions").json()["decisions"]
    mine = next(d for d in decisions if d["pod"] == f"{NS}/web-1")
    assert mine["node"] == "es-big" and mine["score"] == 10
    after = metrics(stack)
    for sample in (
        'edge_sched_extender_requests_total{outcome="ok",verb="filter"}',
        'edge_sched_extender_requests_total{outcome="ok",verb="prioritize"}',
        'edge_sched_extender_requests_total{outcome="ok",verb="bind"}',
        'edge_sched_binds_total{result="ok"}',
    ):
        assert metric_value(after, sample) > metric_value(before, sample), sample


def test_pod_larger_than_any_node_stays_pending_with_the_extenders_reason(control_plane: ControlPlane, stack: EdgeStack) -> None:
    create(control_plane, pod_manifest("huge", NS, cpu="64", node_selector=LABEL))

    def reason() -> str | None:
        events = control_plane.get(f"/api/v1/namespaces/{NS}/events", fieldSelector="involvedObject.name=huge")
        messages = [e.get("message", "") for e in events["items"] if e.get("reason") == "FailedScheduling"]
        return next((m for m in messages if "insufficient cpu (need 64" in m), None)

    message = wait_for(reason, 30, "FailedScheduling event carrying the extender's reason")
    assert "free" in message
    assert control_plane.pod(NS, "huge")["status"]["phase"] == "Pending"
    assert not control_plane.pod(NS, "huge")["spec"].get("nodeName")


def test_gpu_pod_lands_only_on_the_gpu_node(control_plane: ControlPlane, stack: EdgeStack) -> None:
    create(control_plane, pod_manifest("cuda", NS, limits={"nvidia.com/gpu": "1"}, node_selector=LABEL))
    assert node_of(control_plane, "cuda") == "es-gpu"


def test_node_selector_is_respected(control_plane: ControlPlane, stack: EdgeStack) -> None:
    create(control_plane, pod_manifest("zoned", NS, node_selector={"zone": "edge-b"}))
    assert node_of(control_plane, "zoned") == "es-zone"


def test_full_node_objects_mode_binds_too(control_plane: ControlPlane, stack: EdgeStack) -> None:
    create(control_plane, pod_manifest("objects-1", NS, scheduler="edge-objects", cpu="200m", node_selector=LABEL))
    assert node_of(control_plane, "objects-1") in {n.name for n in NODES}
    log = (control_plane.workdir / "kube-scheduler-edge-objects.log").read_text()
    assert "objects-1" in log


def test_cache_follows_pods_and_nodes_created_and_deleted(control_plane: ControlPlane, api: httpx.Client) -> None:
    cache_shows(api, "es-small", lambda r: r["NodeNames"] == ["es-small"])
    # A pod placed directly (no scheduler) takes 1 of es-small's 2 cores.
    doc = pod_manifest("direct", NS, cpu="1")
    doc["spec"]["nodeName"] = "es-small"
    create(control_plane, doc)
    full = cache_shows(api, "es-small", lambda r: "es-small" in r["FailedNodes"])
    assert full["FailedNodes"]["es-small"] == "insufficient cpu (need 1500m, free 1)"
    control_plane.delete(f"/api/v1/namespaces/{NS}/pods/direct?gracePeriodSeconds=0")
    cache_shows(api, "es-small", lambda r: r["NodeNames"] == ["es-small"])
    # A new node appears in the cache (its allocatable is judged), then leaves it.
    control_plane.add_nodes([NodeSpec("es-tiny", cpu="1", labels=LABEL)])
    tiny = cache_shows(api, "es-tiny", lambda r: "es-tiny" in r["FailedAndUnresolvableNodes"])
    assert tiny["FailedAndUnresolvableNodes"]["es-tiny"] == "insufficient cpu (need 1500m, free 1)"
    control_plane.delete_nodes(["es-tiny"])
    cache_shows(api, "es-tiny", lambda r: r["NodeNames"] == ["es-tiny"])  # unknown again: passes unchecked


def test_bind_errors_change_nothing_then_bind_works(control_plane: ControlPlane, api: httpx.Client) -> None:
    # Nobody schedules this pod: its scheduler does not exist.
    create(control_plane, pod_manifest("manual", NS, scheduler="nobody"))
    uid = control_plane.pod(NS, "manual")["metadata"]["uid"]
    args = {"PodName": "manual", "PodNamespace": NS, "PodUID": uid, "Node": "es-big"}
    wrong_uid = api.post("/bind", json={**args, "PodUID": "not-the-uid"}).json()
    assert "Precondition failed" in wrong_uid["Error"] or "UID" in wrong_uid["Error"]
    missing = api.post("/bind", json={**args, "Node": "no-such-node"}).json()
    assert "node 'no-such-node' does not exist" in missing["Error"]
    assert not control_plane.pod(NS, "manual")["spec"].get("nodeName")
    assert api.post("/bind", json=args).json() == {"Error": ""}
    assert node_of(control_plane, "manual") == "es-big"


def test_keeps_working_across_an_api_server_restart(control_plane: ControlPlane, stack: EdgeStack, api: httpx.Client) -> None:
    control_plane.restart_apiserver(down_s=5)
    # Verbs kept answering from the cache while the API server was away.
    assert api.get("/scheduler/health").status_code == 200
    # The watch resumed: a node created after the restart is seen and used.
    try:
        # kwok's own watches back off while the API server is away: on a busy machine it can
        # take it well over 30 s to mark a new node Ready (it is kwok that is slow, not us).
        control_plane.add_nodes([NodeSpec("es-late", cpu="4", labels={**LABEL, "late": "yes"})], timeout_s=120)
        create(control_plane, pod_manifest("after-restart", NS, node_selector={"late": "yes"}))
        assert node_of(control_plane, "after-restart", timeout_s=60) == "es-late"
        wait_for(lambda: api.get("/scheduler/health").json()["components"]["kubernetes"] == "synced", 30, "synced")
    finally:  # never leave the node to later tests of the shared control plane
        control_plane.delete(f"/api/v1/namespaces/{NS}/pods/after-restart?gracePeriodSeconds=0")
        control_plane.delete_nodes(["es-late"])
