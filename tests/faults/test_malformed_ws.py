"""Invalid WebSocket frames on the resource-status feed (spec S8), after a real handshake:
an unmasked client frame, a reserved opcode, RSV bits set, invalid UTF-8 in a text frame, a
ping over 125 bytes, and a truncated frame followed by TCP close.

Proves: the server ends each such connection promptly; the daemon never crashes and logs no
traceback; a healthy client connected alongside keeps getting its status_update broadcasts
on time and answers its queries; health `active_connections` returns to the healthy client
only; the HTTP API answers without a 5xx afterwards.

"Ends the connection" accepts a close frame with 1002 (protocol error) or 1007 (invalid
payload) *or* a plain TCP EOF/reset. Hypercorn 0.18 (through wsproto) drops the TCP
connection without sending a close frame on a protocol error: wsproto reports the error as a
close event already in the CLOSED state, so Hypercorn has no close to answer and just ends the
stream. RFC 6455 7.1.7 lets an endpoint "fail the WebSocket connection" that way; what matters
to a feed is that the bad peer is gone at once and nobody else notices.

Not counted in `resource_status_errors_total`: the application cannot tell these ends from a
clean close. Hypercorn hands it `websocket.disconnect` with code 1006 for *every* end it did
not start itself (a client's clean 1000 close included), and Quart-trio cancels the handler
without passing the code on (docs/resource-status.md says so).
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Iterator

import httpx
import pytest
import trio

from tests.cluster.daemon import EdgeSchedDaemon
from tests.integration.resource_status_helpers import (
    ask,
    feed,
    raw_handshake,
    read_frames_until_close,
    start_daemon,
    wait_connections,
    ws_frame,
)
from tests.integration.test_daemon_standalone import NODES, POD

INTERVAL_S = 0.5
TEXT, PING = 0x1, 0x9
QUERY = b'{"request_id": "bad", "query": "all"}'
# name -> the bytes sent after the handshake
BAD_FRAMES: dict[str, bytes] = {
    "unmasked client frame": ws_frame(TEXT, QUERY, masked=False),
    "reserved opcode 0x3": ws_frame(0x3, QUERY),
    "RSV1-3 set": ws_frame(TEXT, QUERY, rsv=7),
    "invalid UTF-8 in a text frame": ws_frame(TEXT, b'{"request_id": "\xff\xfe"}'),
    "ping over 125 bytes": ws_frame(PING, b"p" * 126),
}
# A frame that announces 100 payload bytes and brings 10; then the client closes TCP.
TRUNCATED = ws_frame(TEXT, b"x" * 100)[:16]
# Each bad connection must be over well within this (it takes milliseconds; the margin is
# for 2 busy cores).
END_WITHIN_S = 5.0


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeSchedDaemon]:
    d = start_daemon(
        tmp_path_factory.mktemp("malformed-ws"),
        RESOURCE_STATUS_UPDATE_INTERVAL=str(INTERVAL_S),
        COMPUTING_ROUTER_ENABLED="false",
        MONITOR_API_URL="",
    )
    yield d
    d.stop()


def server_end(sock: socket.socket) -> int | None:
    """Read server frames until the connection ends: the close code of a close frame, or
    None when it ended without one (EOF or reset)."""
    try:
        payload = read_frames_until_close(sock)
    except AssertionError as exc:  # the helper's "ended without a close frame"
        assert "without a close frame" in str(exc), exc
        return None
    except ConnectionResetError:
        return None
    return int(struct.unpack("!H", payload[:2])[0]) if len(payload) >= 2 else 1005


def send_bad(port: int, data: bytes, *, then_close: bool) -> tuple[int | None, float]:
    """Handshake, send `data`; return how the server ended it and how long that took."""
    sock = raw_handshake(port)
    sock.settimeout(END_WITHIN_S)
    try:
        sock.sendall(data)
        started = time.monotonic()
        if then_close:
            sock.close()
            return None, 0.0
        return server_end(sock), time.monotonic() - started
    finally:
        sock.close()


async def test_invalid_frames_end_their_connection_and_nobody_else_notices(daemon: EdgeSchedDaemon) -> None:
    broadcasts: list[float] = []
    async with feed(daemon) as healthy:

        async def listen() -> None:
            while True:
                message = json.loads(await healthy.get_message())
                if message.get("type") == "status_update":
                    broadcasts.append(time.monotonic())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(listen)
            await wait_connections(daemon, 1)
            began = time.monotonic()
            for name, data in BAD_FRAMES.items():
                code, took = await trio.to_thread.run_sync(lambda: send_bad(daemon.port, data, then_close=False))
                assert code in (None, 1002, 1007), (name, code)
                assert took < END_WITHIN_S, (name, took)
                await wait_connections(daemon, 1)  # the bad client is gone, the healthy one stays
            await trio.to_thread.run_sync(lambda: send_bad(daemon.port, TRUNCATED, then_close=True))
            # The truncated frame's connection is gone too (10 s: the poll's own bound).
            await wait_connections(daemon, 1)
            # Two more intervals, so the broadcasts after the last bad client are seen.
            await trio.sleep(2 * INTERVAL_S + 0.2)
            ended = time.monotonic()
            nursery.cancel_scope.cancel()  # stop listening: `ask` reads the replies itself
        # The healthy client still gets replies, on the same connection.
        reply = await ask(healthy, {"request_id": "after", "query": "all"})
        assert reply["type"] == "query_result"

    # Broadcasts kept coming on schedule the whole time: no gap over one interval plus 1 s
    # (a bad peer that held up the broadcaster would show as a gap of seconds).
    during = [t for t in broadcasts if began <= t <= ended]
    assert len(during) >= int((ended - began) / INTERVAL_S) - 2, (len(during), ended - began)
    gaps = [b - a for a, b in zip([began, *during], [*during, ended])]
    assert max(gaps) < INTERVAL_S + 1.0, max(gaps)

    assert daemon.alive
    with httpx.Client(base_url=daemon.url, timeout=10) as http:
        health = http.get("/api/v1/resource-status/health")
        assert health.status_code == 200 and health.json()["active_connections"] == 0
        assert http.get("/api/v1/scheduler/health").status_code == 200
        filtered = http.post("/api/v1/filter", json={"Pod": POD, "Nodes": NODES})
        assert filtered.status_code == 200 and filtered.json()["Error"] == ""
    assert "Traceback" not in daemon.log_path.read_text()
