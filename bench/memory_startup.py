"""Daemon memory and start-up with a large cluster (issue 10, benchmark 4).

    .venv/bin/python bench/memory_startup.py                  # 5,000 nodes, 50,000 pods
    .venv/bin/python bench/memory_startup.py --nodes 500 --pods 5000

The cluster is a fake API server in a separate process: it answers the daemon's paginated
lists of Nodes and of assigned Pods from pre-encoded pages of objects shaped like
kube-apiserver's (bench/objects.py: managedFields, conditions, statuses; ~2.5 KB per node,
~3.8 KB per pod), holds watches open without events, and answers every other read (the
task-plan deployer's label-selected lists among them: no bench object has a plan label) with an
empty list (404 for metrics.k8s.io). So the daemon goes through its real start-up path —
kubeconfig, reflectors listing 500 objects a page, the cache — exactly as against a real
cluster of that size, without the cost of creating 55,000 objects in etcd on this machine.

Measured, for `edge-sched run` as a subprocess:
* start-up: spawn -> health 200 with the cache synced (`components.kubernetes == "synced"`);
* RSS after the sync settled, and the peak (VmHWM) during start-up;
baseline, in the same run: the same daemon started standalone (no cluster, empty cache).
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import entry, load_line  # noqa: E402
from bench.objects import node_name, node_object, pod_object  # noqa: E402

PAGE = 500
TARGET_SIZE = (5000, 50000)  # nodes, pods: the size the RSS target is set for


# -- the fake API server (its own process) -------------------------------------------------


def _pages(objects: list[dict[str, Any]], kind: str, version: str) -> list[bytes]:
    pages = []
    for start in range(0, max(1, len(objects)), PAGE):
        more = start + PAGE < len(objects)
        meta: dict[str, Any] = {"resourceVersion": version}
        if more:
            meta["continue"] = str(start + PAGE)
        pages.append(json.dumps({"kind": kind, "apiVersion": "v1", "metadata": meta,
                                 "items": objects[start:start + PAGE]}, separators=(",", ":")).encode())
    return pages


def serve_api(nodes: int, pods: int, port_file: Path) -> None:
    per_node = max(1, pods // max(1, nodes))
    node_pages = _pages([node_object(i) for i in range(nodes)], "NodeList", "5000000")
    pod_objects = [pod_object(i, node_name(i // per_node % nodes)) for i in range(pods)]
    pod_pages = _pages(pod_objects, "PodList", "5000000")
    del pod_objects
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            query = parse_qs(url.query)
            if query.get("watch") == ["1"]:
                # An open watch with no events; the daemon ends it itself.
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.flush()
                while not stop.wait(5):
                    pass
                return
            page = int(query.get("continue", ["0"])[0]) // PAGE
            if "labelSelector" in query:
                # The task-plan deployer's label-selected lists: no bench object carries a plan
                # label, so a real API server answers them empty (answering every pod here once
                # made the daemon hold 50,000 raw pods during start-up).
                self._send(200, b'{"kind":"List","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}')
            elif url.path == "/api/v1/nodes":
                self._send(200, node_pages[page])
            elif url.path == "/api/v1/pods":
                self._send(200, pod_pages[page])
            elif "metrics.k8s.io" in url.path:
                self._send(404, b'{"kind":"Status","code":404,"message":"not served"}')
            else:
                self._send(200, b'{"kind":"List","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}')

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_file.write_text(str(server.server_address[1]))
    signal.signal(signal.SIGTERM, lambda *_: (stop.set(), threading.Thread(target=server.shutdown).start()))
    server.serve_forever()


# -- measuring --------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def start_daemon(workdir: Path, kubeconfig: Path | None) -> tuple[float, dict[str, Any]]:
    """Spawn `edge-sched run`, wait for health 200 and (with a cluster) the synced cache.
    Returns (seconds to that point, measurements after settling)."""
    from tests.cluster.daemon import HEALTH_PATH
    from tests.cluster.ports import free_port
    from tests.cluster.processes import Proc, minimal_env

    port = free_port()
    env = minimal_env(PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
    env.update(HOME=str(workdir), USE_SERVICE_ACCOUNT="false", HOST="127.0.0.1", PORT=str(port),
               METRICS_PORT=str(free_port()), UDP_SERVICE_HOST="127.0.0.1", UDP_SERVICE_PORT=str(free_port(udp=True)),
               LOG_LEVEL="WARNING", MONITOR_API_URL="", COMPUTING_ROUTER_ENABLED="false")
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    started = time.monotonic()
    proc = Proc.start("edge-sched", [sys.executable, "-m", "edge_sched", "run"], workdir / "edge-sched.log",
                      env=env, cwd=workdir, port=port)
    try:
        health: dict[str, Any] = {}
        with httpx.Client(timeout=10) as c:
            deadline = started + 180
            while True:
                proc.check_alive()
                try:
                    r = c.get(f"http://127.0.0.1:{port}{HEALTH_PATH}")
                    health = r.json()
                    if r.status_code == 200 and (kubeconfig is None or health["components"]["kubernetes"] == "synced"):
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"edge-sched did not become ready:\n{proc.log_tail()}")
                time.sleep(0.05)
            took = time.monotonic() - started
            time.sleep(3)  # let start-up garbage be collected and the first background work run
            health = c.get(f"http://127.0.0.1:{port}{HEALTH_PATH}").json()
        assert proc.pid is not None
        status = proc_status(proc.pid)
        return took, {"rss_mib": status["VmRSS"] / 1024, "peak_mib": status["VmHWM"] / 1024,
                      "cache": health["components"].get("cache", "")}
    finally:
        proc.stop()


def write_kubeconfig(path: Path, port: int) -> Path:
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: bench\n"
        f"clusters:\n- name: bench\n  cluster:\n    server: http://127.0.0.1:{port}\n"
        "users:\n- name: bench\n  user:\n    token: bench\n"
        "contexts:\n- name: bench\n  context:\n    cluster: bench\n    user: bench\n"
    )
    return path


def run(nodes: int = TARGET_SIZE[0], pods: int = TARGET_SIZE[1]) -> tuple[list[dict[str, Any]], list[str]]:
    lines = [f"daemon memory and start-up: {nodes} nodes, {pods} pods from a fake API server; machine: {load_line()}"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port_file = work / "api.port"
        api = subprocess.Popen([sys.executable, __file__, "--serve-api", str(nodes), str(pods), str(port_file)])
        try:
            deadline = time.monotonic() + 300
            while not port_file.exists() or not port_file.read_text():
                if api.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the fake API server did not start")
                time.sleep(0.1)
            kubeconfig = write_kubeconfig(work / "kubeconfig", int(port_file.read_text()))
            (work / "standalone").mkdir()
            (work / "cluster").mkdir()
            base_s, base = start_daemon(work / "standalone", None)
            big_s, big = start_daemon(work / "cluster", kubeconfig)
        finally:
            api.send_signal(signal.SIGTERM)
            try:
                api.wait(10)
            except subprocess.TimeoutExpired:
                api.kill()
    lines.append(f"  standalone (empty cache): ready in {base_s:.2f}s, RSS {base['rss_mib']:.0f} MiB "
                 f"(peak {base['peak_mib']:.0f} MiB)")
    lines.append(f"  cluster ({big['cache']}): ready and synced in {big_s:.2f}s ({big_s / base_s:.1f}x), "
                 f"RSS {big['rss_mib']:.0f} MiB ({big['rss_mib'] / base['rss_mib']:.1f}x), "
                 f"peak {big['peak_mib']:.0f} MiB; target RSS <= 250 MB")
    lines.append("  baselines: the same daemon standalone (empty cache), start-up to health 200")
    rss_mb = big["rss_mib"] * 1.048576
    at_target = (nodes, pods) == TARGET_SIZE
    results = [
        entry(f"daemon RSS @{nodes} nodes/{pods} pods", rss_mb, "MB", base["rss_mib"] * 1.048576,
              "value <= 250 MB" if at_target else None, rss_mb <= 250 if at_target else None),
        entry(f"daemon peak RSS during start-up @{nodes}/{pods}", big["peak_mib"] * 1.048576, "MB",
              base["peak_mib"] * 1.048576),
        entry(f"start-up to synced @{nodes} nodes/{pods} pods", big_s, "s", base_s),
    ]
    return results, lines


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-api":
        serve_api(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--pods", type=int, default=50000)
    args = parser.parse_args()
    _, lines = run(args.nodes, args.pods)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
