"""Helpers for the resource-status tests: a standalone daemon with nodes known from UDP
computing-power reports (S8: "the node must be known (cluster cache or reports)"), feed
URLs, and request/reply over a trio-websocket connection."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import trio
from trio_websocket import WebSocketConnection, wrap_client_stream

from edge_sched.codecs.power_report import encode_report
from edge_sched.core.power import ComputeType, HostPower, PowerReport, PowerUnit
from tests.cluster.daemon import EdgeSchedDaemon
from tests.cluster.ports import free_port
from tests.cluster.waiting import wait_for

WS_PATH = "/api/v1/resource-status/ws"
HEALTH_PATH = "/api/v1/resource-status/health"

UPDATE: dict[str, Any] = {
    "request_id": "u1",
    "node_id": "node-a",
    "status_id": "s-1",
    "cpu_status": "busy",
    "cpu_usage": 91.5,
    "gpu_status": "in_use",
    "gpu_usage": 40,
    "memory_status": "available",
    "memory_usage": 30,
    "disk_status": "available",
    "disk_usage": 12,
    "network_status": "available",
    "network_usage": 5,
    "overall_load": 70,
}


def standalone_env(tmp: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(tmp), "USE_SERVICE_ACCOUNT": "false", **extra}


def start_daemon(tmp: Path, **extra: str) -> EdgeSchedDaemon:
    return EdgeSchedDaemon.start(standalone_env(tmp, **extra), tmp, free_port())


def ws_url(daemon: EdgeSchedDaemon) -> str:
    return f"ws://127.0.0.1:{daemon.port}{WS_PATH}"


@asynccontextmanager
async def feed(daemon: EdgeSchedDaemon, **options: Any) -> AsyncIterator[WebSocketConnection]:
    """A trio-websocket client of the feed whose TCP stream is always closed on exit.

    `open_websocket_url` leaves the client's socket open when the *server* closed the
    WebSocket (1009, 1013, 1001: its `aclose()` returns early once a close reason is
    known), which pytest reports as an unclosed-socket ResourceWarning. Here the test
    owns the stream and closes it itself.
    """
    stream = await trio.open_tcp_stream("127.0.0.1", daemon.port)
    try:
        async with trio.open_nursery() as nursery:
            ws = await wrap_client_stream(nursery, stream, "127.0.0.1", WS_PATH, **options)
            try:
                yield ws
            finally:
                with trio.move_on_after(5):
                    await ws.aclose()
                nursery.cancel_scope.cancel()
    finally:
        await stream.aclose()


def health(daemon: EdgeSchedDaemon) -> dict[str, Any]:
    response = httpx.get(daemon.url + HEALTH_PATH, timeout=5)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def host(name: str, *, cpu_loads: Iterable[int] = (40, 60), gpu: tuple[float, int] | None = None) -> list[HostPower]:
    entries = [HostPower(name, ComputeType.CPU, 16, 8, tuple(PowerUnit(2.5, load) for load in cpu_loads))]
    if gpu is not None:
        entries.append(HostPower(name, ComputeType.GPU, 16, 8, (PowerUnit(gpu[0], gpu[1], 24.0),)))
    return entries


def report_nodes(daemon: EdgeSchedDaemon, hosts: list[HostPower], report_id: int = 1) -> None:
    """Send S6.1 reports (at most 20 host entries per datagram) and wait until every node shows."""
    names = {h.name for h in hosts}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for start in range(0, len(hosts), 20):
            chunk = tuple(hosts[start : start + 20])
            sock.sendto(encode_report(PowerReport(report_id, chunk)), ("127.0.0.1", daemon.udp_port))
    wait_for(lambda: health(daemon)["nodes"] >= len(names), 10, f"{len(names)} nodes known", interval_s=0.05)


async def health_async(daemon: EdgeSchedDaemon) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(daemon.url + HEALTH_PATH)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def wait_connections(daemon: EdgeSchedDaemon, count: int, timeout_s: float = 10) -> dict[str, Any]:
    """Poll health (without blocking the test's other tasks) until `count` clients are connected."""
    body: dict[str, Any] = {}
    with trio.move_on_after(timeout_s):
        while True:
            body = await health_async(daemon)
            if body["active_connections"] == count:
                return body
            await trio.sleep(0.05)
    raise AssertionError(f"expected {count} connections within {timeout_s}s; health says {body}")


async def next_of_type(ws: WebSocketConnection, kind: str, timeout_s: float = 10) -> dict[str, Any]:
    with trio.fail_after(timeout_s):
        while True:
            message = json.loads(await ws.get_message())
            if message.get("type") == kind:
                return message  # type: ignore[no-any-return]


async def ask(ws: WebSocketConnection, body: dict[str, Any] | str, timeout_s: float = 10) -> dict[str, Any]:
    """Send one message and return the reply carrying its request_id (broadcasts are skipped)."""
    text = body if isinstance(body, str) else json.dumps(body)
    request_id = None if isinstance(body, str) else body.get("request_id")
    await ws.send_message(text)
    with trio.fail_after(timeout_s):
        while True:
            message: dict[str, Any] = json.loads(await ws.get_message())
            if message.get("type") != "status_update" and message.get("request_id") == request_id:
                return message


# -- raw WebSocket frames, for clients that must misbehave on purpose ------------------------


def ws_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, masked: bool = True) -> bytes:
    """One client frame; `rsv` (0-7) sets the RSV1-3 bits, `masked=False` breaks RFC 6455 5.1."""
    mask_bit = 0x80 if masked else 0
    header = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | opcode])
    if len(payload) < 126:
        header += bytes([mask_bit | len(payload)])
    elif len(payload) < 1 << 16:
        header += bytes([mask_bit | 126]) + struct.pack("!H", len(payload))
    else:
        header += bytes([mask_bit | 127]) + struct.pack("!Q", len(payload))
    if not masked:
        return header + payload
    mask = os.urandom(4)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def raw_handshake(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET {WS_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def read_frames_until_close(sock: socket.socket) -> bytes:
    """Unmasked server frames; returns the close frame's payload."""
    buf = b""

    def need(n: int) -> bytes:
        nonlocal buf
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError("connection ended without a close frame")
            buf += chunk
        out, buf = buf[:n], buf[n:]
        return out

    while True:
        b0, b1 = need(2)
        length = b1 & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", need(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", need(8))
        payload = need(length)
        if b0 & 0x0F == 0x8:
            return payload
