"""Small shared pieces of the fault tests: concurrent HTTP, metric totals, kernel UDP drops.

Everything else (daemon start-up, raw WebSocket frames, RSS, metric lookup, sample pods and
nodes) comes from tests/cluster and the integration helpers, so it exists once.
"""

from __future__ import annotations

import time
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import httpx
import trio

from tests.cluster.daemon import EdgeSchedDaemon
from tests.integration.test_power_udp import metrics


def metric_total(daemon: EdgeSchedDaemon, name: str, **labels: str) -> float:
    """Sum of every sample of `name` whose labels include `labels` (0 when none)."""
    total = 0.0
    for key, value in metrics(daemon).items():
        base, _, rest = key.partition("{")
        if base == name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


async def post_all(
    client: httpx.AsyncClient,
    path: str,
    bodies: Sequence[bytes],
    *,
    concurrency: int,
    headers: dict[str, str] | None = None,
) -> list[tuple[httpx.Response, float]]:
    """POST every body (`concurrency` at a time); each answer with its own duration in seconds."""
    results: list[tuple[httpx.Response, float] | None] = [None] * len(bodies)
    send_headers = headers or {"Content-Type": "application/json"}
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < len(bodies):
            i = next_index
            next_index += 1
            started = time.monotonic()
            response = await client.post(path, content=bodies[i], headers=send_headers)
            results[i] = (response, time.monotonic() - started)

    async with trio.open_nursery() as nursery:
        for _ in range(min(concurrency, len(bodies))):
            nursery.start_soon(worker)
    return [r for r in results if r is not None]


def udp_socket_drops(port: int) -> int:
    """Datagrams the kernel dropped for the UDP socket bound to 127.0.0.1:`port` (its receive
    buffer was full): the `drops` column of /proc/net/udp."""
    local = f"0100007F:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local:
            return int(fields[-1])
    raise AssertionError(f"no UDP socket on 127.0.0.1:{port} in /proc/net/udp")


def json_error(response: httpx.Response) -> str:
    """The error message of a non-2xx answer: the body is a JSON object whose `Error` or
    `error` names the problem (a non-empty string)."""
    assert response.headers.get("content-type", "").startswith("application/json"), response.headers
    body: Any = response.json()
    assert isinstance(body, dict), body
    message = body.get("Error", body.get("error"))
    assert isinstance(message, str) and message.strip(), body
    return message
