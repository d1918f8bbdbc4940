"""UDP report ingest benchmark (issue 4): codec speed and the daemon listener's loss on loopback.

    .venv/bin/python bench/udp_ingest.py                 # 10 s per rate: 5k, 20k, 50k reports/s
    .venv/bin/python bench/udp_ingest.py --seconds 3 --rates 5000 20000
    .venv/bin/python bench/udp_ingest.py --rates               # the codec only

1. Codec: decode (and encode) of typical reports — one node, 8 CPUs and 2 GPUs, 183 bytes, 1,000
   different nodes — reported as reports per CPU-second (best of 8 rounds).
2. Listener: a real `edge-sched run` subprocess (standalone, free ports) receives reports from
   1,000 distinct node names, sent from this process at a fixed rate for N seconds. Loss = sent −
   (accepted + rejected) as counted by the daemon's own metrics after the queue has drained.

The sender paces in ~1 ms slices (sending what is due, then sleeping), so it leaves the CPU to
the daemon between slices; still, on a small machine sender, daemon and anything else running
share the cores, so the numbers are a floor, not a ceiling. The first line prints the machine's
CPU count and load average for that reason. Target: no loss at 20,000 reports/s. Neither figure
has a baseline: the codec rate is a value, the loss a fraction of what was sent.
"""

from __future__ import annotations

import argparse
import re
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import entry, load_line  # noqa: E402
from edge_sched.codecs.power_report import decode_report, encode_report  # noqa: E402
from edge_sched.core.power import ComputeType, HostPower, PowerReport, PowerUnit  # noqa: E402
from tests.cluster.daemon import EdgeSchedDaemon  # noqa: E402
from tests.cluster.ports import free_port  # noqa: E402

NODES = 1000
RATES = (5000, 20000, 50000)  # reports/s, the issue's
LOSSLESS_RATE = 20000  # reports/s the listener must take without loss (issue 4)


def sample_report(i: int) -> bytes:
    name = f"bench-node-{i % NODES:04d}"
    cpus = tuple(PowerUnit(2.5, (i + k) % 101) for k in range(8))
    gpus = tuple(PowerUnit(10.5, (i * 7 + k) % 101, 16.0) for k in range(2))
    return encode_report(
        PowerReport(i & 0xFFFFFFFF, (HostPower(name, ComputeType.CPU, 64, 32, cpus), HostPower(name, ComputeType.GPU, 64, 32, gpus)))
    )


def bench_codec(rounds: int = 8) -> tuple[float, float, int]:
    """Best-of-`rounds` CPU-time rates over 1,000 distinct reports (CPU time, so time the
    process spent waiting for a core on a busy machine does not count against the codec)."""
    packets = [sample_report(i) for i in range(NODES)]
    reports = [decode_report(d) for d in packets]

    def best(fn: object, items: list) -> float:  # type: ignore[type-arg]
        rates = []
        for _ in range(rounds):
            start = time.process_time()
            for item in items:
                fn(item)  # type: ignore[operator]
            rates.append(len(items) / max(time.process_time() - start, 1e-9))
        return max(rates)

    return best(decode_report, packets), best(encode_report, reports), len(packets[0])


def counted(daemon: EdgeSchedDaemon) -> float:
    text = httpx.get(f"http://127.0.0.1:{daemon.metrics_port}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if re.match(r"^computing_power_(reports_total|parse_errors_total)(\{.*\})? ", line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def send_at_rate(port: int, rate: int, seconds: float, packets: list[bytes]) -> tuple[int, float]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    address = ("127.0.0.1", port)
    sent, start = 0, time.perf_counter()
    per_ms = rate / 1000
    try:
        while True:
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
            due = int(elapsed * 1000 * per_ms) + 1
            while sent < due:
                try:
                    sock.sendto(packets[sent % len(packets)], address)
                except BlockingIOError:
                    pass
                sent += 1
            time.sleep(0.0005)  # yield the core: on small machines the daemon needs it
    finally:
        sock.close()
    return sent, time.perf_counter() - start


def bench_listener(rates: list[int], seconds: float) -> list[tuple[int, int, float, int]]:
    packets = [sample_report(i) for i in range(NODES)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {"HOME": tmp, "USE_SERVICE_ACCOUNT": "false", "COMPUTING_ROUTER_ENABLED": "false", "LOG_LEVEL": "WARNING"}
        with EdgeSchedDaemon.start(env, Path(tmp), free_port()) as daemon:
            # Wait until the listener takes reports.
            for _ in range(100):
                send_at_rate(daemon.udp_port, 1000, 0.01, packets)
                time.sleep(0.05)
                if counted(daemon) > 0:
                    break
            for rate in rates:
                before = counted(daemon)
                sent, took = send_at_rate(daemon.udp_port, rate, seconds, packets)
                # Let the kernel queue drain: wait until the count stops moving.
                last, now = -1.0, counted(daemon)
                while now != last:
                    time.sleep(0.5)
                    last, now = now, counted(daemon)
                handled = int(now - before)
                results.append((rate, sent, sent / took, sent - handled))
    return results


def run(rates: Sequence[int] = RATES, seconds: float = 10.0) -> tuple[list[dict[str, Any]], list[str]]:
    """Results entries and printable lines; no listener run when `rates` is empty."""
    decode_rate, encode_rate, size = bench_codec()
    lines = [
        f"UDP ingest; machine: {load_line()}",
        f"  codec: decode {decode_rate:,.0f} reports/s, encode {encode_rate:,.0f} reports/s per CPU-second "
        f"({size}-byte report, 8 CPUs + 2 GPUs)",
    ]
    results = [entry("UDP codec decode", decode_rate, "reports/s", None)]
    if not rates:
        return results, lines
    lines.append(f"  listener ({seconds:g} s per rate, {NODES} node names, edge-sched run subprocess):")
    lines.append(f"  {'target/s':>9} {'achieved/s':>11} {'sent':>9} {'lost':>8} {'loss':>7}")
    for rate, sent, achieved, lost in bench_listener(rates, seconds):
        loss = 100 * lost / max(sent, 1)
        lines.append(f"  {rate:>9,} {achieved:>11,.0f} {sent:>9,} {lost:>8,} {loss:>6.2f}%")
        at_target = rate == LOSSLESS_RATE
        results.append(entry(f"UDP listener loss @{rate // 1000}k reports/s", loss, "%", None,
                             "value == 0 %" if at_target else None, lost == 0 if at_target else None))
    return results, lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rates", type=int, nargs="*", default=list(RATES))
    args = parser.parse_args()
    _, lines = run(args.rates, args.seconds)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
