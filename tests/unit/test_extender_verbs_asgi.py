"""The extender verbs' ASGI front (adapters/http/verbs.py) on scripted ASGI messages.

The daemon tests (integration/test_daemon_standalone.py, faults/test_malformed_http.py) drive
it over real sockets; these cover what a socket test cannot script exactly: a body arriving in
chunks past the limit, a client that leaves mid-body, a bug in a verb, and what is handed on.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from edge_sched.adapters.http.verbs import ExtenderVerbs
from edge_sched.runtime.cluster import ClusterCache
from edge_sched.runtime.metrics import build_metrics
from edge_sched.runtime.plans import PlanStore
from edge_sched.runtime.scheduler import Scheduler
from edge_sched.settings import Settings

POD = {"metadata": {"name": "p", "namespace": "default", "uid": "u"},
       "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}}


def verbs(max_bytes: int = 4096) -> tuple[ExtenderVerbs, list[dict[str, Any]], Scheduler]:
    settings = Settings()
    settings = attrs.evolve(settings, server=attrs.evolve(settings.server, max_request_bytes=max_bytes))
    sched = Scheduler(settings, ClusterCache(), PlanStore(clock=lambda: 0.0, expiration_s=300), build_metrics())
    handed_on: list[dict[str, Any]] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        handed_on.append(scope)

    return ExtenderVerbs(sched, inner), handed_on, sched


async def call(app: ExtenderVerbs, path: str, chunks: list[bytes], *, method: str = "POST",
               headers: list[tuple[bytes, bytes]] | None = None, disconnect: bool = False) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1 or disconnect} for i, c in enumerate(chunks)
    ]
    if disconnect:
        messages.append({"type": "http.disconnect"})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": headers or []}
    await app(scope, receive, send)
    return sent


def answer(sent: list[dict[str, Any]]) -> tuple[int, dict[bytes, bytes], Any]:
    start, body = sent
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"content-length"]) == len(body["body"])
    return start["status"], headers, json.loads(body["body"])


def requests(sched: Scheduler, outcome: str) -> float:
    return sched.metrics.registry.get_sample_value(
        "edge_sched_extender_requests_total", {"verb": "filter", "outcome": outcome}
    ) or 0.0


async def test_a_body_in_chunks_is_joined_and_answered() -> None:
    app, handed_on, _ = verbs()
    raw = json.dumps({"Pod": POD, "NodeNames": ["ghost"]}).encode()
    status, _, body = answer(await call(app, "/api/v1/filter", [raw[:10], raw[10:40], raw[40:]]))
    assert status == 200 and body["NodeNames"] == ["ghost"] and handed_on == []


async def test_a_chunked_body_past_the_limit_is_413_and_closes_the_connection() -> None:
    app, _, sched = verbs(max_bytes=1024)
    status, headers, body = answer(await call(app, "/api/v1/filter", [b"{" + b" " * 600, b" " * 600 + b"}"]))
    assert status == 413 and body == {"Error": "body larger than MAX_REQUEST_BYTES (1024)"}
    assert headers[b"connection"] == b"close"
    declared = await call(app, "/api/v1/filter", [b"{}"], headers=[(b"content-length", b"1025")])
    assert answer(declared)[0] == 413
    assert requests(sched, "ok") == 2  # the verb was called, not failed by the client's body


async def test_a_client_that_leaves_mid_body_gets_nothing_and_breaks_nothing() -> None:
    app, _, sched = verbs()
    assert await call(app, "/api/v1/filter", [b'{"Pod":'], disconnect=True) == []
    assert sched.plans.filter_outcome_for("u") is None


async def test_a_bug_in_a_verb_is_a_json_500_counted_as_error(monkeypatch: Any) -> None:
    app, _, sched = verbs()

    async def broken(self: Scheduler, args: Any) -> Any:
        raise KeyError("bug")

    monkeypatch.setattr(Scheduler, "filter", broken)
    status, _, body = answer(await call(app, "/api/v1/filter", [json.dumps({"Pod": POD}).encode()]))
    assert (status, body) == (500, {"Error": "internal error: KeyError"})
    assert requests(sched, "error") == 1


async def test_other_methods_are_405_and_other_paths_and_scopes_are_handed_on() -> None:
    app, handed_on, _ = verbs()
    status, headers, body = answer(await call(app, "/api/v1/filter", [b""], method="GET"))
    assert status == 405 and headers[b"allow"] == b"POST" and "Error" in body
    await call(app, "/api/v1/filter/", [b"{}"])
    await call(app, "/api/v1/scheduler/decisions", [b""], method="GET")
    await app({"type": "websocket", "path": "/api/v1/filter"}, None, None)  # type: ignore[arg-type]
    await app({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert [(s["type"], s.get("path")) for s in handed_on] == [
        ("http", "/api/v1/filter/"), ("http", "/api/v1/scheduler/decisions"),
        ("websocket", "/api/v1/filter"), ("lifespan", None),
    ]
