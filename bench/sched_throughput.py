"""Scheduling throughput through the real kube-scheduler (issue 10, benchmark 2).

    .venv/bin/python bench/sched_throughput.py                       # 1,000 nodes, 3,000 pods per profile
    .venv/bin/python bench/sched_throughput.py --nodes 200 --pods 400

The local control plane (tests/cluster: etcd, kube-apiserver, kube-controller-manager, kwok)
gets N kwok nodes (8 CPU, 16 GiB, 110 pods). Two kube-scheduler profiles are compared in the
same run: `default-bench` (the default plugins, no extender) and `edge-bench` (the profile
`edge-sched scheduler-config` prints: extender with nodeCacheCapable, bind through edge-sched,
the in-tree NodeResourcesFit filter left to edge-sched). Both kube-schedulers run with raised
client QPS (clientConnection qps 1000, burst 2000) so that the client-side rate limiter is not
what is measured. The daemon runs as operators run it (`edge-sched run`, least-privilege
ServiceAccount token, LOG_LEVEL=WARNING, no Prometheus, router disabled).

Each round creates its pods (100m CPU, 64 Mi each) while that profile's kube-scheduler is not
running, waits until they all exist, then starts the scheduler and times from the first pod
bound to the last (a thread polls the count of unbound pods every 0.1 s, metadata-only lists,
from before the scheduler starts, so nothing bound while it comes up escapes the timing).
Rounds run A B B A (default, edge, edge, default), half the pods each, so that a change of the
machine's load during the run weighs on both profiles alike. After each edge round the daemon's
side is printed: its mean time per filter, prioritize and bind call (its own duration histogram,
from a request's arrival to the answer's hand-off) and its CPU use, from the scheduler's start. pods/s per profile = all its pods
/ the sum of its rounds' times.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import attrs
import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import cpu_seconds, entry, load_line, machine  # noqa: E402
from tests.cluster import ControlPlane, EdgeSchedDaemon, NodeSpec, free_port, kube_bin_dir  # noqa: E402
from tests.cluster.stack import daemon_kubeconfig, pod_manifest  # noqa: E402

QPS, BURST = 1000, 2000
PROFILES = {"default": "default-bench", "edge": "edge-bench"}
POLL_S = 0.1
TARGET_SIZE = (1000, 3000)  # nodes, pods per profile: the size the ratio target is set for
META_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"


def scheduler_yaml(cp: ControlPlane, name: str, extender_url: str | None) -> str:
    doc = yaml.safe_load(cp.scheduler_config(name, cp.admin_kubeconfig, extender_url, node_cache_capable=True))
    doc["clientConnection"].update({"qps": QPS, "burst": BURST})
    return yaml.safe_dump(doc, sort_keys=False)


def add_nodes(cp: ControlPlane, count: int) -> None:
    specs = [NodeSpec(f"tp-{i:04d}", cpu="8", memory="16Gi", labels={"edge-sched.bench/throughput": "yes"})
             for i in range(count)]
    # add_nodes creates one by one and then waits until all are Ready; in chunks, so the
    # wait's node list stays cheap to read.
    for start in range(0, count, 250):
        cp.add_nodes(specs[start:start + 250], timeout_s=180)


def create_pods(cp: ControlPlane, namespace: str, scheduler: str, names: list[str], workers: int = 6) -> None:
    def create(chunk: list[str]) -> None:
        with cp.client(timeout_s=30) as c:
            for name in chunk:
                r = c.post(f"/api/v1/namespaces/{namespace}/pods", json=pod_manifest(name, namespace, scheduler=scheduler))
                if r.status_code != 201:
                    raise RuntimeError(f"creating pod {name}: HTTP {r.status_code} {r.text[:200]}")

    chunks = [names[i::workers] for i in range(workers)]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(create, c) for c in chunks]:
            f.result()


def unbound(client: Any, namespace: str) -> int:
    r = client.get(f"/api/v1/namespaces/{namespace}/pods", params={"fieldSelector": "spec.nodeName="},
                   headers={"Accept": META_ONLY})
    r.raise_for_status()
    return len(r.json().get("items") or [])


class UnboundPoller(threading.Thread):
    """Counts a namespace's unbound pods every POLL_S until none is left, as (time, count)
    samples. It runs while the scheduler starts, so that pods bound before the scheduler
    answers /readyz are timed too."""

    def __init__(self, cp: ControlPlane, namespace: str) -> None:
        super().__init__(daemon=True)
        self.cp, self.namespace = cp, namespace
        self.samples: list[tuple[float, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with self.cp.client(timeout_s=30) as client:
            while not self.stop.is_set():
                left = unbound(client, self.namespace)
                self.samples.append((time.monotonic(), left))
                if left == 0:
                    return
                time.sleep(POLL_S)

    def span(self, count: int) -> float:
        """From the last sample that saw all `count` pods unbound to the first that saw none
        (errs by up to one poll against the profile)."""
        start = max(t for t, left in self.samples if left == count)
        return min(t for t, left in self.samples if left == 0) - start


@attrs.frozen
class DaemonSide:
    """What the daemon says of itself: its verb durations (sum, count per verb, from its
    `edge_sched_extender_request_duration_seconds`, measured from the request's arrival to
    the answer's hand-off) and its CPU time; read before and after an edge round."""

    durations: dict[tuple[str, str], float]
    cpu_s: float
    at: float

    @classmethod
    def read(cls, daemon: EdgeSchedDaemon) -> DaemonSide:
        text = httpx.get(f"http://127.0.0.1:{daemon.metrics_port}/metrics", timeout=10).text
        durations = {
            (m["verb"], m["kind"]): float(m["value"])
            for m in re.finditer(r'^edge_sched_extender_request_duration_seconds_(?P<kind>sum|count)'
                                 r'\{verb="(?P<verb>\w+)"\} (?P<value>\S+)$', text, re.MULTILINE)
        }
        pid = daemon.proc.pid
        assert pid is not None, "the daemon is not running"
        return cls(durations, cpu_seconds(pid), time.monotonic())

    def since(self, before: DaemonSide) -> str:
        """`daemon: filter 8.1 ms, prioritize ..., bind ... mean per call; CPU 51 % of a core`."""
        means = []
        for verb in ("filter", "prioritize", "bind"):
            calls = self.durations.get((verb, "count"), 0.0) - before.durations.get((verb, "count"), 0.0)
            spent = self.durations.get((verb, "sum"), 0.0) - before.durations.get((verb, "sum"), 0.0)
            means.append(f"{verb} {1000 * spent / calls:.1f} ms" if calls else f"{verb} -")
        busy = (self.cpu_s - before.cpu_s) / (self.at - before.at)
        return f"daemon side: {', '.join(means)} per call (arrival to answer); CPU {100 * busy:.0f} % of a core"


def timed_round(cp: ControlPlane, profile: str, extender_url: str | None, namespace: str, count: int,
                timeout_s: float) -> tuple[float, float]:
    """(seconds from the first pod bound to the last, load average at the end)."""
    name = PROFILES[profile]
    poller = UnboundPoller(cp, namespace)
    poller.start()
    while not poller.samples:
        time.sleep(0.01)
    if poller.samples[0][1] != count:
        raise SystemExit(f"{profile}: {count - poller.samples[0][1]} pods were bound before the scheduler started")
    proc = cp.start_scheduler(name, scheduler_yaml(cp, name, extender_url))
    try:
        poller.join(timeout_s)
    finally:
        poller.stop.set()
        proc.stop()
    if poller.is_alive() or poller.samples[-1][1] != 0:
        raise SystemExit(f"{profile}: {poller.samples[-1][1]} of {count} pods still unbound after {timeout_s:.0f}s")
    return poller.span(count), machine()["load1"]


def run(
    nodes: int = TARGET_SIZE[0], pods: int = TARGET_SIZE[1], timeout_s: float = 900
) -> tuple[list[dict[str, Any]], list[str]]:
    lines = [f"scheduling throughput: {nodes} kwok nodes, {pods} pods per profile, rounds A B B A; "
             f"machine at start: {load_line()}"]
    half = pods // 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cp = ControlPlane.start(work / "cp", kube_bin_dir())
        try:
            started = time.monotonic()
            add_nodes(cp, nodes)
            lines.append(f"  {nodes} nodes Ready in {time.monotonic() - started:.0f}s")
            kubeconfig = daemon_kubeconfig(cp, work / "daemon")
            env = {"USE_SERVICE_ACCOUNT": "false", "KUBECONFIG": str(kubeconfig), "HOME": str(work / "daemon"),
                   "LOG_LEVEL": "WARNING", "MONITOR_API_URL": "", "COMPUTING_ROUTER_ENABLED": "false"}
            daemon = EdgeSchedDaemon.start(env, work / "daemon", free_port(), timeout_s=60)
            try:
                spent = {"default": 0.0, "edge": 0.0}
                for i, profile in enumerate(("default", "edge", "edge", "default")):
                    namespace = f"tp-{profile}-{i}"
                    cp.create_namespace(namespace)
                    names = [f"p-{j:05d}" for j in range(half)]
                    create_pods(cp, namespace, PROFILES[profile], names)
                    url = daemon.api_url if profile == "edge" else None
                    before = DaemonSide.read(daemon)
                    took, load = timed_round(cp, profile, url, namespace, half, timeout_s)
                    spent[profile] += took
                    lines.append(f"  round {i + 1} {profile:>7}: {half} pods in {took:.1f}s = {half / took:.1f} pods/s "
                                 f"(load {load:.2f})")
                    if profile == "edge":
                        lines.append("      " + DaemonSide.read(daemon).since(before))
                if not daemon.alive:
                    raise SystemExit("edge-sched exited during the benchmark:\n" + daemon.log_tail())
            finally:
                daemon.stop()
        finally:
            cp.stop()
    rate = {p: 2 * half / spent[p] for p in spent}
    ratio = rate["edge"] / rate["default"]
    lines.append(f"  default profile {rate['default']:.1f} pods/s, edge profile {rate['edge']:.1f} pods/s, "
                 f"ratio {ratio:.2f} (target >= 0.6); machine at end: {load_line()}")
    at_target = (nodes, pods) == TARGET_SIZE
    results = [
        entry(f"throughput edge profile @{nodes} nodes", rate["edge"], "pods/s", rate["default"],
              "ratio >= 0.6" if at_target else None, ratio >= 0.6 if at_target else None),
    ]
    return results, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=3000, help="pods per profile")
    args = parser.parse_args()
    _, lines = run(args.nodes, args.pods)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
