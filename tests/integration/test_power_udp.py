"""Computing power against the real daemon subprocess, over real UDP and HTTP (spec S6).

Standalone mode (no cluster), free loopback ports. A fake router runs in a thread of the
test process. Every batch of bad datagrams is followed by a valid "sentinel" report: UDP
on loopback keeps order into one socket and the listener handles datagrams one by one,
so once the sentinel shows in the read API, every datagram before it has been handled.
"""

from __future__ import annotations

import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_sched.codecs.power_report import decode_router_request, encode_report, encode_router_response
from edge_sched.core.power import ComputeType, HostPower, PowerReport, PowerUnit, RouterAnswer
from tests.cluster.daemon import EdgeSchedDaemon
from tests.cluster.ports import free_port
from tests.cluster.processes import minimal_env
from tests.cluster.waiting import wait_for
from tests.unit.test_power_codec import seed_test_packet

REPO = Path(__file__).resolve().parents[2]
BUFFER = 512


class FakeRouter:
    """Answers S6.3 requests: cpu = GHz × cores, GPU TFLOPS = CUDA hundreds × GHz / 5."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)  # test-side thread: lets it notice the stop flag
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(2048)
            except OSError:
                continue
            self.requests.append(data)
            answers = [
                RouterAnswer(p.cpu_ghz * p.cpu_cores, p.gpu_cuda_hundreds * p.gpu_ghz / 5, p.fpga_kilo_logic_units / 50)
                for p in decode_router_request(data)
            ]
            self.sock.sendto(encode_router_response(answers), source)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def env(tmp: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(tmp), "USE_SERVICE_ACCOUNT": "false", "UDP_BUFFER_SIZE": str(BUFFER), **extra}


@pytest.fixture(scope="module")
def router() -> Iterator[FakeRouter]:
    r = FakeRouter()
    yield r
    r.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, router: FakeRouter) -> Iterator[EdgeSchedDaemon]:
    tmp = tmp_path_factory.mktemp("power")
    d = EdgeSchedDaemon.start(env(tmp, COMPUTING_ROUTER_PORT=str(router.port), UDP_TIMEOUT="1"), tmp, free_port())
    yield d
    d.stop()


@pytest.fixture
def http(daemon: EdgeSchedDaemon) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=daemon.api_url, timeout=10) as client:
        yield client


def send(daemon: EdgeSchedDaemon, *datagrams: bytes) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for data in datagrams:
            sock.sendto(data, ("127.0.0.1", daemon.udp_port))


def entries(http: httpx.Client) -> list[dict[str, Any]]:
    body = http.get("/computing-power/nodes").json()
    return list(body["entries"])


def entry(http: httpx.Client, node: str, kind: str) -> dict[str, Any] | None:
    return next((e for e in entries(http) if e["node"] == node and e["type"] == kind), None)


def send_until_seen(daemon: EdgeSchedDaemon, http: httpx.Client, data: bytes, node: str, kind: str = "cpu",
                    report_id: int | None = None) -> dict[str, Any]:
    """Send `data` until the read API shows it (the listener may still be starting)."""

    def seen() -> dict[str, Any] | None:
        send(daemon, data)
        time.sleep(0.05)
        e = entry(http, node, kind)
        return e if e is not None and (report_id is None or e["report_id"] == report_id) else None

    return wait_for(seen, 10, f"report of {node}/{kind} in the read API", procs=[daemon.proc])


def metrics(daemon: EdgeSchedDaemon) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{daemon.metrics_port}/metrics", timeout=5).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            values[m.group(1)] = float(m.group(2))
    return values


def host_name(name: str) -> bytes:
    return name.encode().ljust(64, b"\x00")


# -- valid reports -----------------------------------------------------------------------------


def test_seed_test_packet_shows_in_the_read_api(daemon: EdgeSchedDaemon, http: httpx.Client) -> None:
    e = send_until_seen(daemon, http, seed_test_packet(), "test-node-1")
    assert e["units"] == [{"power": 2.5, "load_pct": 60}]
    assert (e["unit_count"], e["total_memory_gib"], e["available_memory_gib"]) == (1, 100, 80)
    assert (e["average_load_pct"], e["total_power"], e["available_power"]) == (60.0, 2.5, 1.0)
    assert e["report_id"] == 1 and e["power_unit"] == "GHz"
    assert 0 <= e["age_s"] < 10
    one = http.get("/computing-power/nodes/test-node-1")
    assert one.status_code == 200 and one.json()["entries"] == [
        {**e, "age_s": one.json()["entries"][0]["age_s"]}
    ]
    health = http.get("/scheduler/health").json()["components"]["computing_power"]
    assert health["listener"] == f"listening on udp 127.0.0.1:{daemon.udp_port}"
    assert health["fresh_nodes"] >= 1 and health["rule5"] == "on"
    missing = http.get("/computing-power/nodes/no-such-node")
    assert missing.status_code == 404 and "no fresh computing-power report" in missing.json()["error"]


def test_cpu_and_gpu_entries_of_one_node(daemon: EdgeSchedDaemon, http: httpx.Client) -> None:
    data = encode_report(
        PowerReport(
            42,
            (
                HostPower("both-1", ComputeType.CPU, 64, 32, (PowerUnit(2.5, 10), PowerUnit(2.5, 30))),
                HostPower("both-1", ComputeType.GPU, 64, 32, (PowerUnit(5.05, 50, 23.5),)),
            ),
        )
    )
    send_until_seen(daemon, http, data, "both-1", "gpu")
    cpu, gpu = entry(http, "both-1", "cpu"), entry(http, "both-1", "gpu")
    assert cpu is not None and gpu is not None
    assert cpu["available_power"] == pytest.approx(2.5 * 0.9 + 2.5 * 0.7)
    assert gpu["units"] == [{"power": 5.05, "load_pct": 50, "memory_gib": 23.5}]  # hundredths, not "5.5"
    assert gpu["available_power"] == pytest.approx(2.525)
    m = metrics(daemon)
    assert m["computing_power_reports_total"] >= 2
    assert m["computing_power_nodes_total"] >= 2
    assert abs(m["computing_power_latest_report_timestamp"] - time.time()) < 30


# -- bad datagrams -----------------------------------------------------------------------------


def bad_datagrams() -> dict[str, list[bytes]]:
    """Reason -> datagrams; each would create node "garbage-node" if it were applied."""
    valid = struct.pack("!IB", 9, 1) + host_name("garbage-node") + bytes((8, 4, 1, 1)) + struct.pack("!f", 2.0)[:3] + b"\x10"
    wrong_type = bytearray(valid)
    wrong_type[4 + 1 + 64 + 2] = 7
    over_100 = valid[:-1] + b"\x65"
    bad_utf8 = struct.pack("!IB", 9, 1) + b"\xff\xfegarbage-node".ljust(64, b"\x00") + valid[69:]
    gpu_hundredths = struct.pack("!IB", 9, 1) + host_name("garbage-node") + bytes((8, 4, 2, 1, 5, 100, 8, 0, 10))
    return {
        "truncated": [valid[:n] for n in (0, 1, 4, 5, 40, 69, 72, len(valid) - 1)],
        "trailing_bytes": [valid + b"\x00", valid + b"junk"],
        "oversize": [valid + b"\x00" * (BUFFER + 1 - len(valid)), valid + b"\x00" * 3000],
        "unknown_type": [bytes(wrong_type)],
        "invalid_value": [over_100, gpu_hundredths],
        "invalid_name": [bad_utf8],
        "no_hosts": [struct.pack("!IB", 9, 0)],
    }


def test_bad_datagrams_change_nothing_and_are_counted(daemon: EdgeSchedDaemon, http: httpx.Client) -> None:
    send_until_seen(daemon, http, seed_test_packet(), "test-node-1")
    before_entries = {(e["node"], e["type"]): e["report_id"] for e in entries(http)}
    before = metrics(daemon)
    bad = bad_datagrams()
    send(daemon, *[d for group in bad.values() for d in group])
    sentinel = encode_report(PowerReport(77, (HostPower("sentinel-1", ComputeType.CPU, 1, 1, (PowerUnit(1.0, 0),)),)))
    send_until_seen(daemon, http, sentinel, "sentinel-1")
    after_entries = {(e["node"], e["type"]): e["report_id"] for e in entries(http)}
    assert after_entries == {**before_entries, ("sentinel-1", "cpu"): 77}
    assert entry(http, "garbage-node", "cpu") is None
    after = metrics(daemon)
    for reason, datagrams in bad.items():
        key = f'computing_power_parse_errors_total{{reason="{reason}"}}'
        assert after.get(key, 0) - before.get(key, 0) == len(datagrams), reason
    # The flood is logged at a bounded rate, not once per datagram.
    assert daemon.log_tail(400).count("dropped computing-power report") <= 10


def test_random_garbage_flood_keeps_the_listener_alive(daemon: EdgeSchedDaemon, http: httpx.Client) -> None:
    send(daemon, *[os.urandom(n % 700) for n in range(2000)])
    sentinel = encode_report(PowerReport(78, (HostPower("sentinel-2", ComputeType.CPU, 1, 1, (PowerUnit(1.0, 0),)),)))
    send_until_seen(daemon, http, sentinel, "sentinel-2")
    assert http.get("/scheduler/health").status_code == 200


# -- the reporter ------------------------------------------------------------------------------


def run_report(*args: str, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_sched", "report", *args],
        env=minimal_env(PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=timeout_s,
    )


def test_report_once_sends_a_hand_made_report(daemon: EdgeSchedDaemon, http: httpx.Client) -> None:
    target = f"127.0.0.1:{daemon.udp_port}"

    def sent() -> dict[str, Any] | None:
        result = run_report("--once", "--target", target, "--node-name", "cli-node-1", "--cpu-count", "2",
                            "--cpu-power", "3", "--load", "25", "--gpu-count", "1", "--gpu-tflops", "10",
                            "--gpu-load", "95", "--gpu-memory", "16", "--total-memory", "64",
                            "--available-memory", "48", "--report-id", "5")
        assert result.returncode == 0, result.stderr
        assert "sent report 5" in result.stdout
        return entry(http, "cli-node-1", "gpu")

    gpu = wait_for(sent, 20, "cli-node-1's report")
    assert gpu["available_power"] == pytest.approx(0.5) and gpu["units"][0]["memory_gib"] == 16.0
    cpu = entry(http, "cli-node-1", "cpu")
    assert cpu is not None and cpu["available_power"] == pytest.approx(4.5)
    assert (cpu["total_memory_gib"], cpu["available_memory_gib"]) == (64, 48)


def test_report_measures_this_host(daemon: EdgeSchedDaemon, http: httpx.Client) -> None:
    target = f"127.0.0.1:{daemon.udp_port}"
    result = run_report("--once", "--target", target, "--node-name", "measured-1")
    assert result.returncode == 0, result.stderr
    cpu = wait_for(lambda: entry(http, "measured-1", "cpu"), 10, "measured-1's report")
    assert cpu["unit_count"] == os.cpu_count()
    assert all(0 <= u["load_pct"] <= 100 and u["power"] > 0 for u in cpu["units"])
    assert cpu["total_memory_gib"] >= 1


def test_reporter_survives_the_daemon_being_down(tmp_path: Path) -> None:
    port = free_port(udp=True)
    log = tmp_path / "reporter.log"
    with log.open("wb") as out, subprocess.Popen(
        [sys.executable, "-m", "edge_sched", "report", "--target", f"127.0.0.1:{port}", "--interval", "0.2",
         "--node-name", "patient-1"],
        env=minimal_env(PYTHONPATH=str(REPO)), stdout=out, stderr=subprocess.STDOUT,
    ) as proc:
        try:
            time.sleep(1.5)  # nobody listens: sends go nowhere (and may be refused)
            assert proc.poll() is None, log.read_text()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
                listener.bind(("127.0.0.1", port))
                listener.settimeout(5)  # test-side socket
                data, _ = listener.recvfrom(4096)
            assert data[5:69].rstrip(b"\x00") == b"patient-1"
        finally:
            proc.terminate()
            proc.wait(10)


# -- demand and rule 5 through the daemon -------------------------------------------------------


GPU_POD = {
    "metadata": {"name": "trainer", "namespace": "ml", "uid": "u-7"},
    "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "nvidia.com/gpu": "1"},
                                                         "limits": {"nvidia.com/gpu": "1"}}}]},
}


def gpu_node(name: str) -> dict[str, Any]:
    return {"metadata": {"name": name},
            "status": {"allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110", "nvidia.com/gpu": "1"}}}


def test_quantify_asks_the_router(http: httpx.Client, router: FakeRouter) -> None:
    containers = [{"name": "c", "resources": {"requests": {"cpu": "1500m", "nvidia.com/gpu": "2"},
                                              "limits": {"nvidia.com/gpu": "2"}}}]
    r = http.post("/computing-power/quantify", json={"containers": containers})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"] == "router"
    assert body["router_request"] == [
        {"cpu_ghz": 2, "cpu_cores": 2, "gpu_cuda_hundreds": 50, "gpu_ghz": 1, "fpga_kilo_logic_units": 0}
    ]
    assert body["demand"]["cpu_ghz"] == 4.0 and body["demand"]["gpu_tflops"] == 10.0
    assert router.requests and router.requests[-1] == bytes((1, 2, 2, 50, 1, 0))
    assert body["router_request_clamped"] == []


def test_quantify_shows_the_clamped_request_it_sends(http: httpx.Client, router: FakeRouter) -> None:
    containers = [{"name": "c", "resources": {"requests": {"cpu": "300"}, "limits": {"nvidia.com/gpu": "1000"}}}]
    r = http.post("/computing-power/quantify", json={"containers": containers})
    assert r.status_code == 200, r.text
    body = r.json()
    (sent,) = body["router_request"]
    assert (sent["cpu_cores"], sent["gpu_cuda_hundreds"]) == (255, 255)
    assert body["router_request_clamped"] == [
        "container 0 cpu_cores 300 clamped to 255", "container 0 gpu_cuda_hundreds 25000 clamped to 255",
    ]
    assert router.requests[-1][1:] == bytes(sent.values())  # exactly what the router received


@pytest.mark.parametrize(
    ("body", "fragment"),
    [({}, "containers: expected a non-empty list"), ({"containers": [3]}, "containers[0]: expected an object"),
     ({"containers": [{"resources": {"requests": {"cpu": "lots"}}}]}, "containers: spec.containers[0]")],
)
def test_quantify_rejects_bad_bodies(http: httpx.Client, body: dict[str, Any], fragment: str) -> None:
    r = http.post("/computing-power/quantify", json=body)
    assert r.status_code == 400 and fragment in r.json()["error"]


def test_rule5_and_power_score_through_the_extender_api(daemon: EdgeSchedDaemon, http: httpx.Client) -> None:
    for name, load in (("api-gpu-a", 95), ("api-gpu-b", 10)):
        report = PowerReport(1, (HostPower(name, ComputeType.GPU, 16, 8, (PowerUnit(10.0, load, 16.0),)),))
        send_until_seen(daemon, http, encode_report(report), name, "gpu")
    nodes = {"items": [gpu_node("api-gpu-a"), gpu_node("api-gpu-b")]}
    result = http.post("/filter", json={"Pod": GPU_POD, "Nodes": nodes}).json()
    # The fake router prices the reference GPU (25 hundred CUDA cores at 1 GHz) at 5 TFLOPS.
    assert result["FailedNodes"] == {
        "api-gpu-a": "insufficient gpu power (need 5.00 TFLOPS, available 0.50 TFLOPS of 10.00 from 1 unit, "
        "average load 95 percent)"
    }
    assert [n["metadata"]["name"] for n in result["Nodes"]["items"]] == ["api-gpu-b"]
    scores = {h["Host"]: h["Score"] for h in http.post("/prioritize", json={"Pod": GPU_POD, "Nodes": nodes}).json()}
    assert scores == {"api-gpu-a": 0, "api-gpu-b": 10}
    plan = http.get("/scheduler/plan/ml/trainer").json()
    assert any(n.startswith("power demand: cpu 2.00 GHz, gpu 5.00 TFLOPS (router)") for n in plan["notes"])
    assert metrics(daemon)['edge_sched_router_requests_total{result="ok"}'] >= 1


# -- expiry (its own daemon, short expiry) -------------------------------------------------------


def test_reports_expire_and_are_swept(tmp_path: Path) -> None:
    with EdgeSchedDaemon.start(
        env(tmp_path, COMPUTING_POWER_EXPIRY_TIME="2", COMPUTING_POWER_CLEANUP_INTERVAL="1",
            COMPUTING_ROUTER_ENABLED="false"),
        tmp_path, free_port(),
    ) as d, httpx.Client(base_url=d.api_url, timeout=10) as client:
        send_until_seen(d, client, seed_test_packet(), "test-node-1")
        assert metrics(d)["computing_power_nodes_total"] == 1
        seen_at = time.monotonic()
        wait_for(lambda: entry(client, "test-node-1", "cpu") is None, 10, "test-node-1 to expire")
        assert time.monotonic() - seen_at < 4
        assert client.get("/computing-power/nodes/test-node-1").status_code == 404
        assert metrics(d)["computing_power_nodes_total"] == 0
        wait_for(lambda: "removed 1 expired computing-power entries" in d.log_tail(100), 10, "the sweep")
