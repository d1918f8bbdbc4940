"""kube-apiserver unreachable for 30 s under a daemon in cluster mode (spec S2, S4, S5).

Proves: while the API server is down, filter and prioritize in the `NodeNames` form
(nodeCacheCapable) keep answering 200 within SCHEDULER_FILTER_TIMEOUT with the same answer
as before, from the cache (an unknown node would pass; `ao-small` keeps failing with its
cached numbers); health stays 200 and says `kubernetes: degraded (...)`; bind answers a
non-empty Error within KUBE_REQUEST_TIMEOUT and releases its reservation (a second pod
still fits where the failed bind had reserved). After the API server is back: health
returns to `synced`, the watch resumed (a node created after recovery shows in filter
answers with its own numbers), the pod is still unbound (nothing retried the failed bind:
no stale bind), and a fresh bind of it works.

No kube-scheduler runs: the test is the only caller of the verbs, and the pod's
schedulerName is one no scheduler serves, so nothing else can bind it. The short restart
(5 s) with a real kube-scheduler is tests/e2e/test_extender.py::
test_keeps_working_across_an_api_server_restart.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.cluster import ControlPlane, NodeSpec, kwok, wait_for
from tests.cluster.stack import EdgeStack, metric_value, pod_manifest, start_edge_stack

NS = "ao-e2e"
LABEL = {"edge-sched.test/suite": "apiserver-outage"}
SMALL, BIG, LATE, PROBE = "ao-small", "ao-big", "ao-late", "ao-probe"
NODES = [NodeSpec(SMALL, cpu="2", memory="4Gi", labels=LABEL), NodeSpec(BIG, cpu="4", memory="8Gi", labels=LABEL)]
OUTAGE_S = 30.0
FILTER_TIMEOUT_S = 1.0
KUBE_TIMEOUT_S = 2.0
POD = "stay"


@pytest.fixture(scope="module")
def stack(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeStack]:
    control_plane.add_nodes(NODES)
    control_plane.create_namespace(NS)
    s = start_edge_stack(
        control_plane,
        tmp_path_factory.mktemp("apiserver-outage"),
        {
            "SCHEDULER_FILTER_TIMEOUT": str(FILTER_TIMEOUT_S),
            "KUBE_REQUEST_TIMEOUT": str(KUBE_TIMEOUT_S),
            # Watches retry at most every 2 s, so recovery is seen within seconds (the
            # default 30 s cap would only make the test wait longer).
            "KUBE_WATCH_BACKOFF_MAX": "2",
            "MONITOR_API_URL": "",
            "COMPUTING_ROUTER_ENABLED": "false",
        },
        schedulers={},
    )
    try:
        yield s
    finally:
        s.stop()
        control_plane.delete(f"/api/v1/namespaces/{NS}")
        # Hand the session's control plane back usable: after a 30 s outage kwok and the
        # controller-manager leave new nodes NotReady for a minute or more (their watches
        # back off), and later modules give their nodes 30 s to turn Ready. Fresh ones
        # resync at once; the probe node proves it.
        control_plane.restart_controllers()
        control_plane.add_nodes([NodeSpec(PROBE, labels=LABEL)])
        control_plane.delete_nodes([*(n.name for n in NODES), LATE, PROBE])


def timed_post(api: httpx.Client, path: str, body: dict[str, Any]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = api.post(path, json=body)
    return response, time.monotonic() - started


def test_verbs_answer_from_the_cache_through_a_30s_outage_and_no_stale_bind(
    control_plane: ControlPlane, stack: EdgeStack
) -> None:
    # Nobody schedules this pod: only the test's bind calls can place it.
    control_plane.apply([pod_manifest(POD, NS, scheduler="no-such-scheduler", cpu="3")])
    pod = control_plane.pod(NS, POD)
    uid = pod["metadata"]["uid"]
    cycle = {"Pod": pod, "NodeNames": [SMALL, BIG]}
    # A second pod of the same size: it fits on ao-big (4 CPUs) only while nothing is reserved there.
    other = pod_manifest("other", NS, cpu="3")
    other["metadata"]["uid"] = "uid-other"
    bind_args = {"PodName": POD, "PodNamespace": NS, "PodUID": uid, "Node": BIG}
    want_filter = {
        # Unresolvable: no pod on ao-small whose eviction could make room.
        "Nodes": None, "NodeNames": [BIG], "FailedNodes": {},
        "FailedAndUnresolvableNodes": {SMALL: "insufficient cpu (need 3, free 2)"}, "Error": "",
    }
    # 60 s client timeout: far above every bound asserted, so slowness is measured, not cut.
    with httpx.Client(base_url=stack.daemon.api_url, timeout=60) as api:
        health = lambda: api.get("/scheduler/health")  # noqa: E731
        # 30 s: the cache sees both nodes within a second or two of start-up.
        wait_for(lambda: api.post("/filter", json=cycle).json() == want_filter, 30, "cache shows both nodes")
        want_scores = api.post("/prioritize", json=cycle).json()
        assert [h["Host"] for h in want_scores] == [SMALL, BIG] and want_scores[1]["Score"] == 10

        control_plane.stop_apiserver()
        stopped = time.monotonic()
        kube_states: list[str] = []
        bind_errors: list[tuple[str, float]] = []
        timings: list[float] = []
        try:
            while time.monotonic() - stopped < OUTAGE_S:
                for path, want in (("/filter", want_filter), ("/prioritize", want_scores)):
                    response, took = timed_post(api, path, cycle)
                    timings.append(took)
                    assert response.status_code == 200, response.text
                    assert response.json() == want, path
                    assert took < FILTER_TIMEOUT_S, (path, took)
                response = health()
                assert response.status_code == 200, response.text
                kube_states.append(response.json()["components"]["kubernetes"])
                if len(bind_errors) < 3:  # at the start, and twice more later in the outage
                    response, took = timed_post(api, "/bind", bind_args)
                    assert response.status_code == 200, response.text
                    bind_errors.append((response.json()["Error"], took))
                    # The failed bind released its reservation: a 3-CPU pod still fits on ao-big.
                    assert api.post("/filter", json={"Pod": other, "NodeNames": [BIG]}).json()["NodeNames"] == [BIG]
                time.sleep(1.0 if len(bind_errors) < 3 else 0.2)
        finally:
            control_plane.start_apiserver()
        recovered = time.monotonic()

        assert len(timings) >= 40, len(timings)  # the verbs were really exercised through the outage
        for error, took in bind_errors:
            assert error.startswith(f"bind {NS}/{POD} to {BIG}: POST /api/v1/namespaces/{NS}/pods/{POD}/binding: "), error
            # 1 s margin over the kube request bound for the verb's own work on 2 busy cores.
            assert took < KUBE_TIMEOUT_S + 1.0, took
        # The watches noticed: health named the Kubernetes component degraded during the outage.
        assert any(s.startswith("degraded (") for s in kube_states), set(kube_states)

        # 60 s: watches retry every <= 2 s; the relist after recovery takes a moment.
        wait_for(lambda: health().json()["components"]["kubernetes"] == "synced", 60, "kubernetes synced again")
        # Created directly, not through add_nodes: its wait for Ready depends on the
        # controller-manager's own recovery (its informers back off for up to ~30 s after an
        # outage this long), which is not what this test is about; the cache takes any node.
        control_plane.apply([kwok.node_manifest(NodeSpec(LATE, cpu="1", memory="2Gi", labels=LABEL), kwok.next_node_ip())])
        late = {"Pod": pod, "NodeNames": [LATE]}
        # 30 s: a watch event reaches the cache in well under a second once the watch runs.
        wait_for(
            lambda: api.post("/filter", json=late).json()["FailedAndUnresolvableNodes"] == {LATE: "insufficient cpu (need 3, free 1)"},
            30, "the node created after recovery in the cache",
        )
        # No stale bind: 5 s after recovery (well past the watches' 2 s retry), nothing has
        # bound the pod behind our back, and the daemon made no successful bind.
        time.sleep(max(0.0, recovered + 5 - time.monotonic()))
        assert not control_plane.pod(NS, POD)["spec"].get("nodeName")
        text = httpx.get(f"http://127.0.0.1:{stack.daemon.metrics_port}/metrics", timeout=5).text
        assert metric_value(text, 'edge_sched_binds_total{result="error"}') == len(bind_errors)
        assert metric_value(text, 'edge_sched_binds_total{result="ok"}') == 0

        assert api.post("/bind", json=bind_args).json() == {"Error": ""}
        assert control_plane.pod(NS, POD)["spec"]["nodeName"] == BIG
