"""The four extender verbs answered straight from ASGI, ahead of the Quart app (spec S5).

kube-scheduler calls filter, prioritize and bind for every pod, one scheduling cycle at a
time, so their fixed cost is paid per pod. Quart's request machinery (request and app
contexts, routing, signals, the Response object) cost ~0.4 ms of CPU per call, half of
a bare Quart echo's latency (docs/benchmarks.md). `ExtenderVerbs` takes
`POST {API_ROOT}/filter|prioritize|scheduler/priority|bind|preempt` itself and hands every
other request (and the lifespan and WebSocket scopes) to the Quart app unchanged.

What a client sees is what the Quart routes answered: JSON bodies, 400 naming the field for
a bad body, 413 over MAX_REQUEST_BYTES, 405 for another method, a JSON 500 only for a bug.
The verbs need no bearer token (see auth.py), so nothing of the token guard is skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from edge_sched.adapters.http.bodies import BadRequest, decode_json_body, json_bytes
from edge_sched.codecs import extender as wire
from edge_sched.runtime.scheduler import Scheduler

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class TooLarge(Exception):
    pass


class Disconnected(Exception):
    pass


class ExtenderVerbs:
    """An ASGI app: the extender verbs, everything else passed to `app`."""

    def __init__(self, scheduler: Scheduler, app: ASGIApp) -> None:
        self.app = app
        self.metrics = scheduler.metrics
        server = scheduler.settings.server
        self.max_body = server.max_request_bytes
        handlers: dict[str, Callable[[Any], Awaitable[Any]]] = {
            "filter": lambda body: scheduler.filter(wire.parse_extender_args(body)),
            "prioritize": lambda body: scheduler.prioritize(wire.parse_extender_args(body)),
            "bind": lambda body: scheduler.bind(wire.parse_binding_args(body)),
            "preempt": _ready(lambda body: scheduler.preempt(wire.parse_preemption_args(body))),
        }
        paths = {"/filter": "filter", "/prioritize": "prioritize", "/scheduler/priority": "prioritize",
                 "/bind": "bind", "/preempt": "preempt"}
        self.routes = {server.api_root + path: (verb, handlers[verb]) for path, verb in paths.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
        elif scope["method"] != "POST":
            await _respond(send, 405, {"Error": "The method is not allowed for the requested URL."},
                           [(b"allow", b"POST")])
        else:
            await self._answer(scope, receive, send, *route)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, verb: str, handle: Callable[[Any], Awaitable[Any]]
    ) -> None:
        started = time.perf_counter()
        outcome = "ok"
        try:
            try:
                raw = await self._body(scope, receive)
            except TooLarge:
                await _respond(send, 413, {"Error": f"body larger than MAX_REQUEST_BYTES ({self.max_body})"},
                               [(b"connection", b"close")])  # the unread rest must not be parsed as a request
                return
            except Disconnected:
                return
            try:
                status, payload = 200, await handle(decode_json_body(raw))
            except (BadRequest, wire.ExtenderInputError) as exc:
                outcome = "bad_request"
                status, payload = 400, {"Error": str(exc)}
            except Exception as exc:  # a bug: a JSON 500, as the Quart app's handler answers
                outcome = "error"
                log.exception("unhandled error answering a request")
                status, payload = 500, {"Error": f"internal error: {exc.__class__.__name__}"}
            await _respond(send, status, payload)
        finally:
            self.metrics.extender_requests.labels(verb, outcome).inc()
            self.metrics.extender_duration.labels(verb).observe(time.perf_counter() - started)

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                raise TooLarge
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _ready(handle: Callable[[Any], Any]) -> Callable[[Any], Awaitable[Any]]:
    """A synchronous verb as an awaitable one."""

    async def call(body: Any) -> Any:
        return handle(body)

    return call


async def _respond(send: Send, status: int, payload: Any, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    body = payload.encoded if isinstance(payload, wire.HostPriorityList) else json_bytes(payload)
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    *(headers or ())],
    })
    await send({"type": "http.response.body", "body": body})
