"""Shared pieces of the benchmarks: machine state, percentiles, result entries, a raw HTTP client.

Every figure a benchmark reports is paired with a baseline measured in the same run, so
that the ratio stays meaningful on a machine shared with other work; `machine()` records
how loaded the machine was while it ran.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """CPU count and load averages (1, 5, 15 min) right now."""
    one, five, fifteen = os.getloadavg()
    return {"cpus": os.cpu_count(), "load1": round(one, 2), "load5": round(five, 2), "load15": round(fifteen, 2)}


def load_line() -> str:
    m = machine()
    return f"{m['cpus']} CPUs, load average {m['load1']:.2f} / {m['load5']:.2f} / {m['load15']:.2f} (1/5/15 min)"


def pct(values: Sequence[float], q: float) -> float:
    """The q-th percentile by nearest rank (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5 - 1e-9)))
    return ordered[rank - 1]


def entry(
    name: str,
    value: float,
    unit: str,
    baseline: float | None,
    target: str | None = None,
    met: bool | None = None,
) -> dict[str, Any]:
    """One line of bench/results.json: value / baseline = ratio; `target` says what `met` checks."""
    ratio = round(value / baseline, 3) if baseline else None
    return {
        "name": name,
        "value": round(value, 4),
        "unit": unit,
        "baseline": round(baseline, 4) if baseline is not None else None,
        "ratio": ratio,
        "target": target,
        "met": met,
    }


class RawHttp:
    """A keep-alive HTTP/1.1 client on one loopback socket, as cheap as a client gets in Python.

    httpx costs ~0.3 ms per request of the client's own CPU; measured latencies of a
    sub-millisecond handler would mostly be the client. This sends prebuilt bytes and reads
    exactly Content-Length bytes back. When the server ends the connection after an answer
    (`Connection: close`: Hypercorn does after 1,000 requests), the next request opens a new
    one, as Go's client in kube-scheduler does; that request's time includes the connect.
    """

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.address = (host, port)
        self.sock = self._connect()
        self.buf = b""
        self.closing = False

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    @staticmethod
    def request_bytes(method: str, path: str, body: bytes = b"", content_type: str = "application/json") -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode() + body

    def send(self, raw: bytes) -> tuple[int, bytes]:
        if self.closing:
            self.sock.close()
            self.sock, self.buf, self.closing = self._connect(), b"", False
        self.sock.sendall(raw)
        return self._read_response()

    def _read_response(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(262144)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            key, _, value = line.partition(b":")
            key = key.strip().lower()
            if key == b"content-length":
                length = int(value.strip())
            elif key == b"connection" and value.strip().lower() == b"close":
                self.closing = True
        while len(rest) < length:
            chunk = self.sock.recv(max(262144, length - len(rest)))
            if not chunk:
                raise ConnectionError("server closed the connection mid-body")
            rest += chunk
        self.buf = rest[length:]
        return status, rest[:length]

    def close(self) -> None:
        self.sock.close()


def timed(client: RawHttp, raw: bytes) -> tuple[float, int]:
    """(seconds, status) of one request."""
    started = time.perf_counter()
    status, _ = client.send(raw)
    return time.perf_counter() - started, status


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
