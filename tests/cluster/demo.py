"""`make demo`: edge-sched scheduling a mixed edge cluster, end to end, on this machine.

Starts the real control plane with 20 kwok nodes of mixed CPU/GPU/FPGA capacity, edge-sched
with a least-privilege token, a simulated computing-power reporter per node sending real
S6.1 UDP packets, a kube-scheduler whose `edge-scheduler` profile calls edge-sched, submits
a mix of pods, prints pod -> node -> score/reason, then waits for Ctrl-C (or SIGTERM/SIGHUP)
and tears everything down, its work directory included unless `--keep`.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from edge_sched.codecs.power_report import encode_report
from edge_sched.core.power import ComputeType, HostPower, PowerReport, PowerUnit
from tests.cluster import ControlPlane, NodeSpec, kube_bin_dir
from tests.cluster.processes import interrupt_on_signals
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


REPORT_INTERVAL_S = 2.0


def node_report(spec: NodeSpec, index: int) -> tuple[HostPower, ...]:
    """What the demo's reporter on `spec` announces: chosen so placements differ.

    GPU node 00 is saturated (95%), the others progressively idler; CPU load cycles
    0-30% so measured power, not just requests, separates otherwise equal boxes.
    """
    memory = int(spec.memory.removesuffix("Gi"))
    cpus = int(spec.cpu)
    cpu = HostPower(spec.name, ComputeType.CPU, memory, memory // 2,
                    tuple(PowerUnit(2.5, 10 * (index % 4)) for _ in range(cpus)))
    hosts = [cpu]
    if spec.gpu:
        load = 95 if spec.name.endswith("00") else 10 + 15 * (index % 4)
        hosts.append(HostPower(spec.name, ComputeType.GPU, memory, memory // 2,
                               tuple(PowerUnit(14.0, load, 16.0) for _ in range(spec.gpu))))
    if spec.fpga:
        hosts.append(HostPower(spec.name, ComputeType.FPGA, memory, memory // 2,
                               tuple(PowerUnit(2.4, 20 + 10 * (index % 3)) for _ in range(spec.fpga))))
    return tuple(hosts)


def run_reporters(nodes: list[NodeSpec], target: tuple[str, int], stop: threading.Event) -> list[threading.Thread]:
    """One simulated reporter per node: real S6.1 datagrams over UDP every few seconds."""

    def reporter(spec: NodeSpec, index: int) -> None:
        hosts = node_report(spec, index)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for report_id in itertools.count(1):
                sock.sendto(encode_report(PowerReport(report_id, hosts)), target)
                if stop.wait(REPORT_INTERVAL_S):
                    return

    threads = [threading.Thread(target=reporter, args=(n, i), daemon=True, name=f"reporter-{n.name}")
               for i, n in enumerate(nodes)]
    for t in threads:
        t.start()
    return threads


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
    parser.add_argument("--keep", action="store_true", help="keep the work directory (state and logs) at the end")
    args = parser.parse_args(argv)
    interrupt_on_signals()
    try:
        run_demo(wait=not args.no_wait, keep=args.keep)
    except KeyboardInterrupt:
        pass  # torn down in run_demo's finally
    return 0


def run_demo(*, wait: bool, keep: bool) -> None:
    """Everything `main` describes; KeyboardInterrupt (Ctrl-C, SIGTERM, SIGHUP) ends it at any step."""
    workdir = Path(tempfile.mkdtemp(prefix="edge-sched-demo-"))
    print("building or finding the control-plane binaries (first time: ~10 min)...", flush=True)
    bin_dir = kube_bin_dir()
    print(f"starting etcd, kube-apiserver, kube-controller-manager, kwok in {workdir}", flush=True)
    cp = None
    stack = None
    stop_reporters = threading.Event()
    try:
        cp = ControlPlane.start(workdir / "cluster", bin_dir)
        nodes = demo_nodes()
        cp.add_nodes(nodes)
        print(f"{len(nodes)} kwok nodes ready (8 CPU, 6 GPU, 6 FPGA)", flush=True)
        cp.create_namespace(NS)
        stack = start_edge_stack(
            cp, workdir / "edge-sched",
            {"KUBE_NAMESPACE": "edge-scheduler", "ENABLE_GPU_SCHEDULING": "true", "COMPUTING_ROUTER_ENABLED": "false"},
        )
        print(f"edge-sched serving at {stack.daemon.api_url}; kube-scheduler profile 'edge-scheduler' calls it", flush=True)
        run_reporters(nodes, ("127.0.0.1", stack.daemon.udp_port), stop_reporters)
        with httpx.Client(base_url=stack.daemon.api_url, timeout=10) as api:
            def reported() -> int:
                return int(api.get("/computing-power/nodes").json()["nodes"])
            deadline = time.monotonic() + 20
            while reported() < len(nodes) and time.monotonic() < deadline:
                time.sleep(0.5)
            print(f"{reported()} nodes reporting computing power over UDP port {stack.daemon.udp_port}", flush=True)
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
        print(f"power        : {stack.daemon.api_url}/computing-power/nodes")
        print(f"status page  : http://127.0.0.1:{stack.daemon.port}/")
        print(f"status feed  : ws://127.0.0.1:{stack.daemon.port}/api/v1/resource-status/ws")
        print(f"task plans   : {stack.daemon.api_url}/task-planning/example  "
              f"(edge-sched plan apply FILE --url {stack.daemon.api_url})")
        print(f"kubeconfig   : {cp.admin_kubeconfig}")
        print(f"logs         : {workdir}" + ("" if keep else "  (removed at the end; --keep keeps them)"))
        if wait:
            print("\nCtrl-C tears everything down.", flush=True)
            while True:
                time.sleep(3600)
    finally:
        stop_reporters.set()
        if stack is not None:
            stack.stop()
        if cp is not None:
            cp.stop()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        print("stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
