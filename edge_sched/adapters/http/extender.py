"""The scheduler extender verbs over HTTP (spec S5).

Handlers decode, call the `Scheduler`, and encode; they read the cache and
never wait on slow inputs, so an answer is produced well within
SCHEDULER_FILTER_TIMEOUT. Errors in the body are 400 with `Error`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from quart import Blueprint, Response

from edge_sched.adapters.http.bodies import BadRequest, json_response, read_json
from edge_sched.codecs import extender as wire
from edge_sched.runtime.scheduler import Scheduler

log = logging.getLogger(__name__)


def extender_blueprint(scheduler: Scheduler) -> Blueprint:
    bp = Blueprint("extender", __name__)
    metrics = scheduler.metrics

    async def answer(verb: str, handle: Callable[[Any], Awaitable[Any]]) -> Response:
        started = time.perf_counter()
        outcome = "ok"
        try:
            body = await read_json()
            return json_response(await handle(body))
        except (BadRequest, wire.ExtenderInputError) as exc:
            outcome = "bad_request"
            return json_response({"Error": str(exc)}, 400)
        finally:
            metrics.extender_requests.labels(verb, outcome).inc()
            metrics.extender_duration.labels(verb).observe(time.perf_counter() - started)

    async def do_filter(body: Any) -> Any:
        return await scheduler.filter(wire.parse_extender_args(body))

    async def do_prioritize(body: Any) -> Any:
        return await scheduler.prioritize(wire.parse_extender_args(body))

    async def do_bind(body: Any) -> Any:
        return await scheduler.bind(wire.parse_binding_args(body))

    async def do_preempt(body: Any) -> Any:
        return scheduler.preempt(wire.parse_preemption_args(body))

    @bp.post("/filter")
    async def filter_() -> Response:
        return await answer("filter", do_filter)

    @bp.post("/prioritize")
    @bp.post("/scheduler/priority")
    async def prioritize() -> Response:
        return await answer("prioritize", do_prioritize)

    @bp.post("/bind")
    async def bind() -> Response:
        return await answer("bind", do_bind)

    @bp.post("/preempt")
    async def preempt() -> Response:
        return await answer("preempt", do_preempt)

    def plan_of(namespace: str, pod: str) -> Response:
        plan = scheduler.plans.get(f"{namespace}/{pod}")
        if plan is None:
            return json_response({"error": f"no current plan for pod {namespace}/{pod}"}, 404)
        return json_response(plan.to_json())

    def scores_of(namespace: str, pod: str) -> Response:
        plan = scheduler.plans.get(f"{namespace}/{pod}")
        if plan is None:
            return json_response({"error": f"no current scores for pod {namespace}/{pod}"}, 404)
        data = plan.to_json()
        return json_response({"pod": data["pod"], "scores": data["scores"]})

    @bp.get("/scheduler/decisions")
    async def decisions() -> Response:
        """Recent binds, newest first (bounded; for the status page and demos)."""
        return json_response({"decisions": [d.to_json() for d in reversed(scheduler.recent)]})

    @bp.get("/scheduler/plan/<namespace>/<pod>")
    async def plan(namespace: str, pod: str) -> Response:
        return plan_of(namespace, pod)

    @bp.get("/scheduler/plan/<pod>")
    async def plan_default(pod: str) -> Response:
        return plan_of("default", pod)

    @bp.get("/scheduler/scores/<namespace>/<pod>")
    async def scores(namespace: str, pod: str) -> Response:
        return scores_of(namespace, pod)

    @bp.get("/scheduler/scores/<pod>")
    async def scores_default(pod: str) -> Response:
        return scores_of("default", pod)

    return bp
