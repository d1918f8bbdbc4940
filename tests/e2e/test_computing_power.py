"""Computing power end to end (issue 4; spec S6, filter rule 5, the score's power term).

Two identical kwok GPU nodes; `edge-sched report --once` (the real CLI, over real UDP)
announces node A's GPUs loaded 95% and node B's 10%. The real kube-scheduler calls the
daemon as its extender and the daemon binds.

* `score` stack (ENABLE_COMPUTING_POWER_FILTER=false): nothing fails A, so the power term
  alone decides. A tie would go to A (ties break by node name, and bind follows the plan),
  so landing on B shows the power term at work.
* `filter` stack (rule 5 on): a pod whose demand (1 GPU × DEFAULT_GPU_TFLOPS 5 = 5 TFLOPS)
  exceeds A's 1.00 available TFLOPS is never placed on A: pinned to A it stays Pending,
  and kube-scheduler's event carries the daemon's reason with the numbers.

The router is disabled in both stacks so the demand is the S6.4 estimate (the router path
is covered against a fake router in tests/integration/test_power_udp.py).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster import ControlPlane, NodeSpec, wait_for
from tests.cluster.processes import minimal_env
from tests.cluster.stack import EdgeStack, metric_value, pod_manifest, start_edge_stack

REPO = Path(__file__).resolve().parents[2]
NS = "cp-e2e"
SUITE = {"edge-sched.test/suite": "computing-power"}
NODE_A, NODE_B = "cp-gpu-a", "cp-gpu-b"
NODES = [NodeSpec(n, cpu="8", memory="16Gi", gpu=2, labels=SUITE) for n in (NODE_A, NODE_B)]
GPU_LOAD = {NODE_A: 95, NODE_B: 10}
SCORE_SCHEDULER, FILTER_SCHEDULER = "cp-score-scheduler", "cp-filter-scheduler"


def report(daemon_udp_port: int, node: str) -> None:
    """What a node's agent sends: 8 CPUs at 2.5 GHz 10% busy, 2 GPUs of 10 TFLOPS."""
    result = subprocess.run(
        [
            sys.executable, "-m", "edge_sched", "report", "--once",
            "--target", f"127.0.0.1:{daemon_udp_port}", "--node-name", node,
            "--cpu-count", "8", "--cpu-power", "2.5", "--load", "10",
            "--gpu-count", "2", "--gpu-tflops", "10", "--gpu-memory", "16", "--gpu-load", str(GPU_LOAD[node]),
            "--total-memory", "16", "--available-memory", "12",
        ],
        env=minimal_env(PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr


def announce(stack: EdgeStack) -> None:
    """Run the reporters until the daemon's read API shows both nodes' GPU power."""
    with httpx.Client(base_url=stack.daemon.api_url, timeout=10) as api:

        def shown() -> bool:
            for node in (NODE_A, NODE_B):
                report(stack.daemon.udp_port, node)
            entries = api.get("/computing-power/nodes").json()["entries"]
            gpus = {e["node"]: e for e in entries if e["type"] == "gpu"}
            return NODE_A in gpus and NODE_B in gpus

        wait_for(shown, 30, "both GPU nodes in the computing-power read API", procs=[stack.daemon.proc])
        a = api.get(f"/computing-power/nodes/{NODE_A}").json()["entries"]
        gpu_a = next(e for e in a if e["type"] == "gpu")
        assert gpu_a["available_power"] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def stacks(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, EdgeStack]]:
    control_plane.add_nodes(NODES)
    control_plane.create_namespace(NS)
    started: dict[str, EdgeStack] = {}
    try:
        common = {"COMPUTING_ROUTER_ENABLED": "false", "ENABLE_GPU_SCHEDULING": "true"}
        started["score"] = start_edge_stack(
            control_plane, tmp_path_factory.mktemp("cp-score"),
            {**common, "ENABLE_COMPUTING_POWER_FILTER": "false"}, schedulers={SCORE_SCHEDULER: True},
        )
        started["filter"] = start_edge_stack(
            control_plane, tmp_path_factory.mktemp("cp-filter"),
            {**common, "ENABLE_COMPUTING_POWER_FILTER": "true"}, schedulers={FILTER_SCHEDULER: True},
        )
        for stack in started.values():
            announce(stack)
        yield started
    finally:
        for stack in started.values():
            stack.stop()
        control_plane.delete(f"/api/v1/namespaces/{NS}")
        control_plane.delete_nodes(n.name for n in NODES)


def gpu_pod(name: str, scheduler: str, node_selector: dict[str, str] | None = None) -> dict[str, Any]:
    return pod_manifest(
        name, NS, scheduler=scheduler, cpu="500m", limits={"nvidia.com/gpu": "1"},
        node_selector=node_selector or SUITE,
    )


def node_of(cp: ControlPlane, name: str) -> str:
    return str(cp.wait_for_pod_phase(NS, name, "Running", timeout_s=45)["spec"]["nodeName"])


def test_gpu_pod_lands_on_the_node_with_free_gpu_power(control_plane: ControlPlane, stacks: dict[str, EdgeStack]) -> None:
    stack = stacks["score"]
    metrics_url = f"http://127.0.0.1:{stack.daemon.metrics_port}/metrics"
    before = metric_value(httpx.get(metrics_url, timeout=5).text, 'edge_sched_binds_total{result="ok"}')
    control_plane.apply([gpu_pod("cp-trainer", SCORE_SCHEDULER)])
    assert node_of(control_plane, "cp-trainer") == NODE_B
    # The daemon bound it (bind follows its plan, whose best node is B).
    after = metric_value(httpx.get(metrics_url, timeout=5).text, 'edge_sched_binds_total{result="ok"}')
    assert after == before + 1


def test_filter_keeps_a_pod_off_a_node_without_enough_power(
    control_plane: ControlPlane, stacks: dict[str, EdgeStack]
) -> None:
    # Free to go anywhere in the suite: only B has the power.
    control_plane.apply([gpu_pod("cp-free", FILTER_SCHEDULER)])
    assert node_of(control_plane, "cp-free") == NODE_B
    # Pinned to A: never placed, and the reason names the numbers.
    control_plane.apply([gpu_pod("cp-pinned", FILTER_SCHEDULER, {"kubernetes.io/hostname": NODE_A})])
    expected = (
        "insufficient gpu power (need 5.00 TFLOPS, available 1.00 TFLOPS of 20.00 from 2 units, average load 95 percent)"
    )

    seen: list[str] = []

    def reason() -> str | None:
        events = control_plane.get(f"/api/v1/namespaces/{NS}/events")
        seen[:] = [
            f"{e.get('involvedObject', {}).get('name')}: {e.get('reason')}: {e.get('message', '')}"
            for e in events["items"]
        ]
        return next((m for m in seen if m.startswith("cp-pinned: FailedScheduling: ") and expected in m), None)

    try:
        wait_for(reason, 45, "FailedScheduling event with the rule-5 reason")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nevents in {NS}:\n" + "\n".join(seen)) from None
    pod = control_plane.pod(NS, "cp-pinned")
    assert pod["status"]["phase"] == "Pending" and not pod["spec"].get("nodeName")
    condition = next(c for c in pod["status"].get("conditions", []) if c["type"] == "PodScheduled")
    assert condition["status"] == "False" and expected in condition["message"]
