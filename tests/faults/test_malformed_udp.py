"""100,000 malformed computing-power datagrams (spec S6.1) against one standalone daemon.

Proves: every datagram the project's own codec rejects is rejected by the daemon too and
counted under the same reason, none of them changes state (reports_total and the read API
are exactly as before), and the daemon stays alive and healthy.

The datagrams are mutations of valid S6.1 reports from a seeded generator (truncations,
extensions, wrong host/unit counts, unknown types, load > 100, hundredths > 99, bad or empty
UTF-8 names) plus random bytes; the codec (`decode_report`) keeps only those it rejects, so
"state unchanged" is exact. Sends are paced in chunks (the next chunk goes once the daemon
has counted the previous one), and anything the kernel still dropped for the daemon's
socket is read from /proc/net/udp, so the counter check is exact: counted + dropped == sent.
"""

from __future__ import annotations

import random
import socket
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from edge_sched.codecs.power_report import decode_report, encode_report
from edge_sched.core.power import ComputeType, HostPower, PowerReport, PowerUnit
from edge_sched.errors import DecodeError
from tests.cluster.daemon import EdgeSchedDaemon
from tests.faults.helpers import metric_total, udp_socket_drops
from tests.integration.resource_status_helpers import start_daemon
from tests.integration.test_power_udp import send_until_seen
from tests.unit.test_power_codec import seed_test_packet

SEED = 20261204
PACKETS = 100_000
CHUNK = 1_000
BUFFER = 1024  # UDP_BUFFER_SIZE; generated datagrams stay within it, so only the codec decides
UNIT_BYTES = {ComputeType.CPU: 4, ComputeType.GPU: 5, ComputeType.FPGA: 3}
LOAD_OFFSET = {ComputeType.CPU: 3, ComputeType.GPU: 4, ComputeType.FPGA: 2}
FIRST_UNIT = 73  # header 5 + name 64 + total, available, type, count
BAD_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x80abc", b"\xf8\x88\x80\x80\x80")


def _unit(rng: random.Random, kind: ComputeType) -> PowerUnit:
    load = rng.randint(0, 100)
    if kind is ComputeType.GPU:
        return PowerUnit(rng.randint(0, 25599) / 100, load, rng.randint(0, 25599) / 100)
    if kind is ComputeType.FPGA:
        return PowerUnit(rng.randint(0, 25599) / 100, load)
    return PowerUnit(rng.uniform(0.5, 4.0), load)


def valid_report(rng: random.Random) -> tuple[bytes, ComputeType, int]:
    """A valid report, the type of its first host and that host's unit count."""
    kinds = rng.sample(list(ComputeType), rng.randint(1, 3))
    hosts = [
        HostPower(f"fz-{rng.randrange(1000)}", kind, 64, 32, tuple(_unit(rng, kind) for _ in range(rng.randint(1, 4))))
        for kind in kinds
    ]
    return encode_report(PowerReport(rng.getrandbits(32), tuple(hosts))), kinds[0], len(hosts[0].units)


def mutate(rng: random.Random) -> bytes:
    data, kind, count = valid_report(rng)
    p = bytearray(data)
    unit = FIRST_UNIT + rng.randrange(count) * UNIT_BYTES[kind]
    op = rng.randrange(11)
    if op == 0:  # truncated
        return bytes(p[: rng.randrange(len(p))])
    if op == 1:  # extended
        return bytes(p + rng.randbytes(rng.randint(1, 16)))
    if op == 2:  # host count disagrees with the body
        p[4] = rng.choice([0, *range(p[4] + 1, 256)])
    elif op == 3:  # unit count of the first host disagrees
        p[72] = (count + rng.randint(1, 255)) % 256
    elif op == 4:  # unknown computing_force_type
        p[71] = rng.choice([0, *range(4, 256)])
    elif op == 5:  # load > 100
        p[unit + LOAD_OFFSET[kind]] = rng.randint(101, 255)
    elif op == 6 and kind is not ComputeType.CPU:  # hundredths > 99
        p[unit + rng.choice((1, 3) if kind is ComputeType.GPU else (1,))] = rng.randint(100, 255)
    elif op == 7:  # bad UTF-8 in the name
        bad = rng.choice(BAD_UTF8)
        at = rng.randrange(5, 69 - len(bad))
        p[at : at + len(bad)] = bad
    elif op == 8:  # empty name
        p[5:69] = bytes(64)
    elif op == 9:  # available memory above total
        p[69], p[70] = 4, rng.randint(5, 255)
    elif op == 10:  # random bytes
        return rng.randbytes(rng.randrange(0, BUFFER))
    else:  # a byte anywhere
        p[rng.randrange(len(p))] = rng.randrange(256)
    return bytes(p)


def rejected_datagrams(seed: int, count: int) -> tuple[list[bytes], Counter[str]]:
    """`count` seeded datagrams the codec rejects, and how many of each reason."""
    rng = random.Random(seed)
    out: list[bytes] = []
    reasons: Counter[str] = Counter()
    while len(out) < count:
        data = mutate(rng)
        if len(data) > BUFFER:
            continue
        try:
            decode_report(data)
        except DecodeError as exc:
            out.append(data)
            reasons[exc.reason] += 1
    return out, reasons


def test_the_generator_is_seeded_and_covers_every_mutation() -> None:
    first, reasons = rejected_datagrams(SEED, 5_000)
    again, _ = rejected_datagrams(SEED, 5_000)
    assert first == again
    assert set(reasons) >= {"truncated", "trailing_bytes", "unknown_type", "invalid_value", "invalid_name", "no_hosts"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeSchedDaemon]:
    tmp = tmp_path_factory.mktemp("malformed-udp")
    d = start_daemon(tmp, UDP_BUFFER_SIZE=str(BUFFER), COMPUTING_ROUTER_ENABLED="false", MONITOR_API_URL="")
    yield d
    d.stop()


def _entries(http: httpx.Client) -> list[dict[str, Any]]:
    # age_s grows by itself; everything else must be untouched.
    return [{k: v for k, v in e.items() if k != "age_s"} for e in http.get("/computing-power/nodes").json()["entries"]]


def test_100k_rejected_datagrams_change_nothing_and_are_all_counted(daemon: EdgeSchedDaemon) -> None:
    datagrams, reasons = rejected_datagrams(SEED, PACKETS)
    with httpx.Client(base_url=daemon.api_url, timeout=10) as http:
        send_until_seen(daemon, http, seed_test_packet(), "test-node-1")
        entries_before = _entries(http)
        reports_before = metric_total(daemon, "computing_power_reports_total")
        errors_before = {r: metric_total(daemon, "computing_power_parse_errors_total", reason=r) for r in reasons}
        total_before = metric_total(daemon, "computing_power_parse_errors_total")
        drops_before = udp_socket_drops(daemon.udp_port)

        started = time.monotonic()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for start in range(0, PACKETS, CHUNK):
                for data in datagrams[start : start + CHUNK]:
                    sock.sendto(data, ("127.0.0.1", daemon.udp_port))
                sent = start + CHUNK
                # Pace: the next chunk goes once this one was counted or dropped by the kernel.
                # 30 s per chunk is far beyond the ~50 ms the daemon needs for 1,000 datagrams.
                deadline = time.monotonic() + 30
                while True:
                    daemon.proc.check_alive()
                    handled = metric_total(daemon, "computing_power_parse_errors_total") - total_before
                    dropped = udp_socket_drops(daemon.udp_port) - drops_before
                    if handled + dropped >= sent or time.monotonic() > deadline:
                        break
                    time.sleep(0.01)
                assert handled + dropped == sent, (handled, dropped, sent)
        elapsed = time.monotonic() - started

        dropped = udp_socket_drops(daemon.udp_port) - drops_before
        counted = metric_total(daemon, "computing_power_parse_errors_total") - total_before
        assert counted == PACKETS - dropped
        assert dropped <= PACKETS // 100, f"pacing should keep kernel drops rare: {dropped}"
        if dropped == 0:  # then every reason matches the codec's exactly
            for reason, n in reasons.items():
                got = metric_total(daemon, "computing_power_parse_errors_total", reason=reason) - errors_before[reason]
                assert got == n, (reason, got, n)
        assert metric_total(daemon, "computing_power_reports_total") == reports_before
        assert _entries(http) == entries_before
        assert not any(e["node"].startswith("fz-") for e in _entries(http))
        assert http.get("/scheduler/health").status_code == 200
        assert daemon.alive
        # The flood is logged at a bounded rate (5 lines per 10 s), not once per datagram.
        log_lines = daemon.log_path.read_text().count("dropped computing-power report")
        assert log_lines <= 5 * (elapsed / 10 + 2), log_lines
