"""Extender verb latency (issue 10, benchmark 1): filter and prioritize with NodeNames
(nodeCacheCapable: true) at 100, 1,000 and 5,000 cached nodes, against a bare Quart-trio echo
handler on the same Hypercorn stack in the same process, measured in the same run.

    .venv/bin/python bench/extender_latency.py                    # 100, 1,000, 5,000 nodes
    .venv/bin/python bench/extender_latency.py --nodes 1000 --requests 300

How the cache is filled: no cluster. A server process runs the real daemon
(`runtime.supervisor.run_daemon`, standalone, every background service on) and fills its
`ClusterCache` through the reflectors' own sinks (`NodeSink`/`PodSink.replace`) with Node and
Pod objects shaped like kube-apiserver's (bench/objects.py): N nodes and 10 running pods per
node. Every node also has a fresh computing-power report (rule 5 and the power score run) and
a Prometheus reading: a fake Prometheus in the same process answers the daemon's real poller
(so filter rule 4 and the score use live usage). The router is disabled (a network round trip
is not the verb's cost). One more run at 1,000 nodes has no Prometheus (MONITOR_API_URL empty, as
when it is down): every node's usage then comes from its UDP report. Two more, at 1,000 and
5,000 nodes, have churn: the server places a pod on a random node every 3 ms (and removes the
oldest of the last 500), about one per scheduling cycle, as kube-scheduler's binds change nodes
between calls; the verbs then rebuild what those nodes changed. Beside the daemon, the same
process serves `POST /echo` (returns the request body as it came) with the daemon's own
Hypercorn configuration: the baseline.

The client is a separate process with one keep-alive connection and a minimal HTTP client,
sending one request at a time as kube-scheduler does (one scheduling cycle at a time), so
req/s = 1 / mean latency. Echo, filter and prioritize are interleaved in blocks of 20 so that
changes in the machine's load during the run hit all three alike. Each request names a
different pod (64 cycled), like a stream of pods.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import RawHttp, entry, load_line, machine, pct, timed  # noqa: E402
from bench.objects import node_name, node_object, pending_pod, pod_object  # noqa: E402

PODS_PER_NODE = 10
BLOCK = 20
DISTINCT_PODS = 64
CHURN_MS = 3.0  # with churn, a pod placed every 3 ms: about one per scheduling cycle here
CHURN_PODS = 500
NODE_COUNTS = (100, 1000, 5000)  # the issue's


# -- the server process ------------------------------------------------------------------


def _serve(nodes: int, pods_per_node: int, echo_port: int, prom_port: int, churn_ms: float) -> None:
    """prom_port 0: no Prometheus, usage from the UDP reports; churn_ms > 0: a pod placed on a
    random node that often (the oldest of the last CHURN_PODS removed), as binds do."""
    import trio
    from functools import partial

    from hypercorn.trio import serve
    from quart import Response, request
    from quart_trio import QuartTrio

    from edge_sched.core.power import ComputeType, HostPower, PowerReport, PowerUnit
    from edge_sched.logs import configure_logging
    from edge_sched.runtime.cluster import NodeSink, PodSink
    from edge_sched.runtime.supervisor import _hypercorn_config, run_daemon, settle_heap
    from edge_sched.settings import load_settings

    settings = load_settings(None).settings
    configure_logging("WARNING", "text")

    echo = QuartTrio("echo")

    @echo.post("/echo")
    async def echo_body() -> Response:
        return Response(await request.get_data(as_text=False), content_type="application/json")

    prom = QuartTrio("prometheus")
    names = [node_name(i) for i in range(nodes)]
    now = time.time()

    def vector(base: float) -> bytes:
        result = [{"metric": {"node": n}, "value": [now, f"{base + (i % 40) / 100:.2f}"]} for i, n in enumerate(names)]
        return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()

    answers = {"cpu": vector(0.2), "memory": vector(0.3)}

    @prom.get("/api/v1/query")
    async def query() -> Response:
        # Fresh timestamps each poll, as a real Prometheus gives.
        kind = "memory" if "mem" in request.args.get("query", "").lower() else "cpu"
        return Response(answers[kind].replace(str(now).encode(), str(time.time()).encode()),
                        content_type="application/json")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            if prom_port:
                prom_cfg = _hypercorn_config(settings, prom_port, tls=False)
                await nursery.start(partial(serve, prom, prom_cfg, shutdown_trigger=trio.sleep_forever))

            async def daemon_then_stop(task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
                await run_daemon(settings, None, task_status=task_status)
                nursery.cancel_scope.cancel()

            daemon = await nursery.start(daemon_then_stop)
            NodeSink(daemon.cache).replace([node_object(i) for i in range(nodes)])
            PodSink(daemon.cache).replace(
                [pod_object(i * pods_per_node + j, node_name(i)) for i in range(nodes) for j in range(pods_per_node)]
            )
            power = daemon.scheduler.power
            assert power is not None, "computing power must be enabled for this benchmark"
            for start in range(0, nodes, 10):
                hosts = tuple(
                    HostPower(node_name(i), ComputeType.CPU, 16, 8, tuple(PowerUnit(2.5, (i + k) % 80) for k in range(8)))
                    for i in range(start, min(nodes, start + 10))
                )
                power.store.apply(PowerReport(start, hosts))
            settle_heap()  # as `edge-sched run` does once its cache has synced
            echo_cfg = _hypercorn_config(settings, echo_port, tls=False)
            await nursery.start(partial(serve, echo, echo_cfg, shutdown_trigger=trio.sleep_forever))
            # Wait for the first Prometheus poll to land.
            usage = daemon.scheduler.usage
            expected = "prometheus" if prom_port else "udp-report"
            deadline = trio.current_time() + 30
            while usage.health(daemon.cache.nodes.values())["source"] != expected:
                if trio.current_time() > deadline:
                    raise SystemExit(f"the nodes' usage never came from {expected}")
                await trio.sleep(0.1)
            if churn_ms > 0:
                nursery.start_soon(_churn, daemon.cache, nodes, churn_ms)
            print("ready", flush=True)

    trio.run(main)


async def _churn(cache: Any, nodes: int, every_ms: float) -> None:
    import random

    import trio

    from edge_sched.runtime.cluster import PodSink

    sink = PodSink(cache)
    rng = random.Random(10)
    placed: list[dict[str, Any]] = []
    for i in range(10**9):
        await trio.sleep(every_ms / 1000)
        pod = pod_object(10**8 + i, node_name(rng.randrange(nodes)))
        sink.upsert(pod)
        placed.append(pod)
        if len(placed) > CHURN_PODS:
            sink.delete(placed.pop(0))


# -- the client ---------------------------------------------------------------------------


def start_server(
    nodes: int, workdir: Path, pods_per_node: int = PODS_PER_NODE, tree: Path | None = None, prometheus: bool = True,
    churn_ms: float = 0.0,
) -> tuple[subprocess.Popen[str], dict[str, int]]:
    """Start a bench server; `tree`: another checkout whose edge_sched to run (A/B runs);
    without `prometheus`, usage comes from the nodes' UDP reports."""
    from tests.cluster.ports import free_port

    ports = {"api": free_port(), "echo": free_port(), "prom": free_port(), "metrics": free_port(),
             "udp": free_port(udp=True)}
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(workdir), "PYTHONPATH": str(REPO),
        "USE_SERVICE_ACCOUNT": "false", "HOST": "127.0.0.1", "PORT": str(ports["api"]),
        "METRICS_PORT": str(ports["metrics"]), "UDP_SERVICE_HOST": "127.0.0.1", "UDP_SERVICE_PORT": str(ports["udp"]),
        "COMPUTING_ROUTER_ENABLED": "false", "MONITOR_API_URL": f"http://127.0.0.1:{ports['prom']}" if prometheus else "",
        "LOG_LEVEL": "WARNING",
    }
    if tree is not None:
        env["EDGE_SCHED_TREE"] = str(Path(tree).resolve())
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(nodes), str(pods_per_node), str(ports["echo"]),
         str(ports["prom"] if prometheus else 0), str(churn_ms)],
        env=env, cwd=workdir, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise SystemExit(f"bench server for {nodes} nodes did not start (exit {proc.wait()})")
    return proc, ports


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def bodies(nodes: int) -> list[bytes]:
    names = [node_name(i) for i in range(nodes)]
    out = []
    for p in range(DISTINCT_PODS):
        pod = pending_pod(900000 + p)
        out.append(json.dumps({"Pod": pod, "Nodes": None, "NodeNames": names}, separators=(",", ":")).encode())
    return out


def measure(
    nodes: int, requests: int, workdir: Path, compare: Path | None = None, prometheus: bool = True,
    churn_ms: float = 0.0,
) -> dict[str, dict[str, float]]:
    """{kind: {p50_ms, p99_ms, rps, n}} for echo, filter and prioritize (and, with `compare`,
    filter@base and prioritize@base served by that checkout, interleaved in the same run)."""
    servers = [start_server(nodes, workdir, prometheus=prometheus, churn_ms=churn_ms)]
    try:
        if compare is not None:
            servers.append(start_server(nodes, workdir, tree=compare))
        pods = bodies(nodes)
        targets: dict[str, tuple[int, str]] = {
            "echo": (servers[0][1]["echo"], "/echo"),
            "filter": (servers[0][1]["api"], "/api/v1/filter"),
            "prioritize": (servers[0][1]["api"], "/api/v1/prioritize"),
        }
        if compare is not None:
            targets["filter@base"] = (servers[1][1]["api"], "/api/v1/filter")
            targets["prioritize@base"] = (servers[1][1]["api"], "/api/v1/prioritize")
        raws = {kind: (port, [RawHttp.request_bytes("POST", path, b) for b in pods]) for kind, (port, path) in targets.items()}
        conns = {kind: RawHttp(port) for kind, (port, _) in raws.items()}
        # Check the answers once, then warm up.
        for kind, (_, reqs) in raws.items():
            status, body = conns[kind].send(reqs[0])
            if status != 200:
                raise SystemExit(f"{kind} answered {status}: {body[:300]!r}")
            if kind.startswith("filter"):
                passed = json.loads(body)["NodeNames"]
                if len(passed) != nodes:
                    raise SystemExit(f"filter passed {len(passed)} of {nodes} nodes: {json.loads(body)['FailedNodes']}")
        for _ in range(3):
            for kind, (_, reqs) in raws.items():
                for r in reqs[:5]:
                    conns[kind].send(r)
        samples: dict[str, list[float]] = {k: [] for k in raws}
        sent = 0
        while sent < requests:
            for kind, (_, reqs) in raws.items():
                for i in range(sent, min(requests, sent + BLOCK)):
                    took, status = timed(conns[kind], reqs[i % len(reqs)])
                    if status != 200:
                        raise SystemExit(f"{kind} answered {status}")
                    samples[kind].append(took)
            sent += BLOCK
        for c in conns.values():
            c.close()
    finally:
        for proc, _ in servers:
            stop_server(proc)
    return {
        kind: {
            "p50_ms": pct(v, 50) * 1000, "p99_ms": pct(v, 99) * 1000,
            "rps": len(v) / sum(v), "n": len(v), "body_kib": len(raws[kind][1][0]) / 1024,
        }
        for kind, v in samples.items()
    }


def default_requests(nodes: int) -> int:
    return 600 if nodes <= 1000 else 300


def run(node_counts: Sequence[int] = NODE_COUNTS, requests: int | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Results entries and printable lines."""
    results: list[dict[str, Any]] = []
    lines = [f"extender verb latency (NodeNames; in-process cache, {PODS_PER_NODE} pods/node); machine: {load_line()}"]
    # The runs (nodes unchanged between calls but for Prometheus polls), then at 1,000
    # nodes one without Prometheus (usage from UDP reports, as when it is down), then the
    # largest two with churn (a pod placed every CHURN_MS, as binds do while pods are scheduled).
    udp_nodes = 1000 if 1000 in node_counts else node_counts[-1]
    runs = [(n, True, 0.0) for n in node_counts] + [(udp_nodes, False, 0.0)]
    runs += [(n, True, CHURN_MS) for n in sorted(node_counts)[-2:]]
    with tempfile.TemporaryDirectory() as tmp:
        for n, prometheus, churn_ms in runs:
            m = measure(n, requests or default_requests(n), Path(tmp), prometheus=prometheus, churn_ms=churn_ms)
            echo = m["echo"]
            label = f"@{n} nodes" + ("" if prometheus else ", UDP usage") + (", churn" if churn_ms else "")
            what = ("" if prometheus else "; no Prometheus, usage from UDP reports") + (
                f"; a pod placed every {churn_ms:g} ms" if churn_ms else "")
            lines.append(
                f"  {n:>5} nodes ({echo['body_kib']:.0f} KiB request{what}): "
                f"echo p50 {echo['p50_ms']:.2f} ms p99 {echo['p99_ms']:.2f} ms {echo['rps']:.0f} req/s; load {machine()['load1']:.2f}"
            )
            for verb in ("filter", "prioritize"):
                v = m[verb]
                lines.append(
                    f"        {verb:<10}: p50 {v['p50_ms']:.2f} ms ({v['p50_ms'] / echo['p50_ms']:.2f}x echo), "
                    f"p99 {v['p99_ms']:.2f} ms ({v['p99_ms'] / echo['p99_ms']:.2f}x), {v['rps']:.0f} req/s "
                    f"({v['rps'] / echo['rps']:.2f}x)"
                )
                targeted = prometheus and not churn_ms and n in (1000, 5000)
                p50_target = "ratio <= 1.5 (p50 vs echo p50)" if targeted and n == 1000 else None
                p50_met = (v["p50_ms"] / echo["p50_ms"] <= 1.5) if p50_target else None
                results.append(entry(f"{verb} p50 {label}", v["p50_ms"], "ms", echo["p50_ms"], p50_target, p50_met))
                p99_target = "value <= 10 ms" if targeted and n == 5000 else None
                p99_met = (v["p99_ms"] <= 10.0) if p99_target else None
                results.append(entry(f"{verb} p99 {label}", v["p99_ms"], "ms", echo["p99_ms"], p99_target, p99_met))
                results.append(entry(f"{verb} req/s {label}", v["rps"], "req/s", echo["rps"]))
    return results, lines


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        if os.environ.get("EDGE_SCHED_TREE"):  # run another checkout's edge_sched (A/B)
            sys.path.insert(0, os.environ["EDGE_SCHED_TREE"])
        nodes, pods_per_node, echo_port, prom_port = map(int, sys.argv[2:6])
        _serve(nodes, pods_per_node, echo_port, prom_port, float(sys.argv[6]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=list(NODE_COUNTS))
    parser.add_argument("--requests", type=int, default=None, help="requests per verb (default 600, 300 at 5,000 nodes)")
    parser.add_argument("--compare", type=Path, metavar="TREE",
                        help="also serve TREE's edge_sched (e.g. a `git worktree` of an older commit), interleaved: A/B")
    args = parser.parse_args()
    if args.compare is not None:
        with tempfile.TemporaryDirectory() as tmp:
            for n in args.nodes:
                m = measure(n, args.requests or default_requests(n), Path(tmp), compare=args.compare)
                print(f"{n} nodes, machine {load_line()}")
                for verb in ("filter", "prioritize"):
                    new, base = m[verb], m[f"{verb}@base"]
                    print(f"  {verb:<10} p50 {base['p50_ms']:.2f} -> {new['p50_ms']:.2f} ms "
                          f"({base['p50_ms'] / new['p50_ms']:.2f}x faster), p99 {base['p99_ms']:.2f} -> "
                          f"{new['p99_ms']:.2f} ms; echo p50 {m['echo']['p50_ms']:.2f} ms")
        return 0
    results, lines = run(args.nodes, args.requests)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
