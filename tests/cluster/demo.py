"""`make demo`: edge-sched scheduling a mixed edge cluster, end to end, on this machine.

Starts the real control plane with 20 kwok nodes of mixed CPU/GPU/FPGA capacity, edge-sched
with a least-privilege token, a kube-scheduler whose `edge-scheduler` profile calls it,
submits a mix of pods, prints pod -> node -> score/reason, then waits for Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.cluster import ControlPlane, NodeSpec, kube_bin_dir
from tests.cluster.stack import pod_manifest, start_edge_stack

NS = "demo"


def demo_nodes() -> list[NodeSpec]:
    nodes = []
    for i in range(8):  # CPU-only edge boxes, from small to large
        nodes.append(NodeSpec(f"edge-cpu-{i:02d}", cpu=str(2 + 2 * i), memory=f"{4 + 4 * i}Gi",
                              labels={"edge-sched.demo/kind": "cpu", "zone": f"zone-{i % 3}"}))
    for i in range(6):  # GPU boxes
        nodes.append(NodeSpec(f"edge-gpu-{i:02d}", cpu="8", memory="32Gi", gpu=1 + i % 4,
                              labels={"edge-sched.demo/kind": "gpu", "zone": f"zone-{i % 3}"}))
    for i in range(6):  # FPGA boxes
        nodes.append(NodeSpec(f"edge-fpga-{i:02d}", cpu="4", memory="8Gi", fpga=1 + i % 2,
                              labels={"edge-sched.demo/kind": "fpga", "zone": f"zone-{i % 3}"}))
    return nodes


def demo_pods() -> list[dict[str, Any]]:
    pods = [pod_manifest(f"web-{i}", NS, cpu="500m", memory="256Mi") for i in range(6)]
    pods += [pod_manifest(f"train-{i}", NS, cpu="2", memory="4Gi", limits={"nvidia.com/gpu": "1"}) for i in range(4)]
    pods += [pod_manifest(f"infer-fpga-{i}", NS, cpu="1", memory="1Gi", limits={"example.com/fpga": "1"}) for i in range(3)]
    pods.append(pod_manifest("batch-big", NS, cpu="12", memory="24Gi"))
    pods.append(pod_manifest("zone-1-cache", NS, cpu="250m", node_selector={"zone": "zone-1"}))
    pods.append(pod_manifest("too-big", NS, cpu="64", memory="8Gi"))
    return pods


def failure_reason(cp: ControlPlane, name: str) -> str:
    events = cp.get(f"/api/v1/namespaces/{NS}/events", fieldSelector=f"involvedObject.name={name}")
    messages = [e.get("message", "") for e in events["items"] if e.get("reason") == "FailedScheduling"]
    return messages[-1] if messages else "pending"


def print_table(cp: ControlPlane, api: httpx.Client, pods: list[dict[str, Any]]) -> None:
    decisions = {d["pod"]: d for d in api.get("/scheduler/decisions").json()["decisions"]}
    rows = []
    for doc in pods:
        name = doc["metadata"]["name"]
        pod = cp.pod(NS, name)
        node = pod["spec"].get("nodeName") or "-"
        decision = decisions.get(f"{NS}/{name}")
        if decision:
            detail = f"score {decision['score']}/10" + (" (plan followed)" if decision["followed_plan"] else "")
        else:
            detail = failure_reason(cp, name)
        rows.append((name, pod["status"].get("phase", "?"), node, detail))
    width = [max(len(r[i]) for r in rows + [("POD", "PHASE", "NODE", "")]) for i in range(3)]
    print(f"{'POD':<{width[0]}}  {'PHASE':<{width[1]}}  {'NODE':<{width[2]}}  SCORE / REASON")
    for r in rows:
        print(f"{r[0]:<{width[0]}}  {r[1]:<{width[1]}}  {r[2]:<{width[2]}}  {r[3]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-wait", action="store_true", help="tear down right after printing")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="edge-sched-demo-"))
    print(f"building or finding the control-plane binaries (first time: ~10 min)...", flush=True)
    bin_dir = kube_bin_dir()
    print(f"starting etcd, kube-apiserver, kube-controller-manager, kwok in {workdir}", flush=True)
    cp = ControlPlane.start(workdir / "cluster", bin_dir)
    stack = None
    try:
        nodes = demo_nodes()
        cp.add_nodes(nodes)
        print(f"{len(nodes)} kwok nodes ready (8 CPU, 6 GPU, 6 FPGA)", flush=True)
        cp.create_namespace(NS)
        stack = start_edge_stack(cp, workdir / "edge-sched", {"KUBE_NAMESPACE": "edge-scheduler"})
        print(f"edge-sched serving at {stack.daemon.api_url}; kube-scheduler profile 'edge-scheduler' calls it", flush=True)
        pods = demo_pods()
        cp.apply(pods)
        print(f"submitted {len(pods)} pods; waiting for them to be scheduled...", flush=True)
        deadline = time.monotonic() + 60
        expected_pending = {"too-big"}
        with httpx.Client(base_url=stack.daemon.api_url, timeout=10) as api:
            while time.monotonic() < deadline:
                placed = {p["metadata"]["name"] for p in cp.get(f"/api/v1/namespaces/{NS}/pods")["items"]
                          if p["spec"].get("nodeName")}
                if placed >= {p["metadata"]["name"] for p in pods} - expected_pending:
                    break
                time.sleep(1)
            time.sleep(2)  # let the unschedulable pod's event arrive
            print()
            print_table(cp, api, pods)
        print()
        print(f"extender API : {stack.daemon.api_url}  (try {stack.daemon.api_url}/scheduler/health)")
        print(f"metrics      : http://127.0.0.1:{stack.daemon.metrics_port}/metrics")
        print(f"kubeconfig   : {cp.admin_kubeconfig}")
        print(f"logs         : {workdir}")
        if not args.no_wait:
            print("\nCtrl-C tears everything down.", flush=True)
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        if stack is not None:
            stack.stop()
        cp.stop()
        print("stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
